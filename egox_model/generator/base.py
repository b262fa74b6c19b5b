"""The one generator interface: a `Clip` in, ego frames (plus the prior and diagnostics) out."""
from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Callable, ClassVar

from egox_model.clip import Clip
from egox_model.output import GeneratorOutput

if TYPE_CHECKING:
    from egox_model.generator.config import GeneratorConfig

__all__ = ["Generator", "StepCallback"]

#: Called after each denoising step as callback(step_index, num_steps); backends without
#: steps call it once per stage.
StepCallback = Callable[[int, int], None]


class Generator(abc.ABC):
    """A backend that turns a clip into ego video. Implementations: see `make_generator`."""

    name: ClassVar[str]

    @classmethod
    @abc.abstractmethod
    def from_config(cls, config: GeneratorConfig) -> Generator:
        """The backend built from its part of the config tree (and the shared prior)."""

    @abc.abstractmethod
    def generate(self, clip: Clip, *, callback: StepCallback | None = None) -> GeneratorOutput:
        """Synthesize the ego video of `clip` (one frame per exo frame, at the ego_K size)."""
