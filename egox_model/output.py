"""`GeneratorOutput`: what every generator backend returns for a clip."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from egox_model.prior import EgoPrior

__all__ = ["GeneratorOutput"]


@dataclass
class GeneratorOutput:
    """Generated ego frames (F, h, w, 3) uint8 with the stamps of their source exo frames,
    the ego prior they were conditioned on, per-stage ms per frame and backend diagnostics."""

    ego_rgb: np.ndarray
    prior: EgoPrior
    backend: str
    stamps_ns: np.ndarray | None = None
    ms_per_frame: dict[str, float] = field(default_factory=dict)
    diagnostics: dict = field(default_factory=dict)
