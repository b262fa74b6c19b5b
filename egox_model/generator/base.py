"""The one generator interface: a `Clip` in, ego frames (plus the prior and diagnostics) out."""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Callable, ClassVar

import numpy as np

from egox_model.clip import Clip

__all__ = ["EgoPrior", "Generator", "GeneratorOutput", "StepCallback"]

#: Called after each denoising step as callback(step_index, num_steps); backends without
#: steps call it once per stage.
StepCallback = Callable[[int, int], None]


@dataclass
class EgoPrior:
    """The geometric ego prior of a clip: the exo point cloud rendered at every ego pose.

    rgb (F, h, w, 3) uint8 (black where uncovered), depth_m (F, h, w) float32 ego z-depth
    (0 where uncovered), mask (F, h, w) bool coverage. exo_depth_m (F, H, W) float32 is the
    fused exo depth and exo_static (F, H, W) bool the pixels that were lifted.
    """

    rgb: np.ndarray
    depth_m: np.ndarray
    mask: np.ndarray
    exo_depth_m: np.ndarray
    exo_static: np.ndarray
    fusion: dict = field(default_factory=dict)
    ms_per_frame: dict[str, float] = field(default_factory=dict)


@dataclass
class GeneratorOutput:
    """Generated ego frames (F, h, w, 3) uint8 with the stamps of their source exo frames."""

    ego_rgb: np.ndarray
    prior: EgoPrior
    backend: str
    stamps_ns: np.ndarray | None = None
    ms_per_frame: dict[str, float] = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)


class Generator(abc.ABC):
    """A backend that turns a clip into ego video. Implementations: see `make_generator`."""

    name: ClassVar[str]

    @abc.abstractmethod
    def generate(self, clip: Clip, *, callback: StepCallback | None = None) -> GeneratorOutput:
        """Synthesize the ego video of `clip` (one frame per exo frame, at the ego_K size)."""
