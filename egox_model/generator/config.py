"""`GeneratorConfig`: the backend choice, the shared ego prior and every backend's settings.

The root of the config tree below the node: `egox generate` and `egox demo` fill it from
flags, the `egox` node's `EgoxConfig` extends it with the ROS settings.
"""
from __future__ import annotations

from dataclasses import dataclass

from egox_model.config import check_settings, group, setting
from egox_model.errors import ConfigError
from egox_model.generator.remote import RemoteConfig
from egox_model.generator.wan.config import WanConfig
from egox_model.geometry.latent_grid import check_clip_shapes, check_context_frames
from egox_model.perception.config import PerceptionConfig
from egox_model.prior import PriorConfig

__all__ = ["BACKENDS", "GeneratorConfig"]

#: Backend name -> "module:Class" (imported only when built).
BACKENDS = {
    "prior": "egox_model.generator.prior_backend:PriorGenerator",
    "wan": "egox_model.generator.wan.backend:WanGenerator",
    "remote": "egox_model.generator.remote:RemoteGenerator",
}
#: Backend name -> check of the clip shapes it can take (frames, exo (H, W), ego (H, W)).
_CLIP_SHAPE_CHECKS = {"wan": check_clip_shapes}
#: Backend name -> check of the overlap of consecutive clips it can continue from (overlap,
#: frames); backends without one take any overlap.
_CLIP_OVERLAP_CHECKS = {"wan": check_context_frames}


@dataclass(frozen=True)
class GeneratorConfig:
    """Which backend runs, and the settings of the prior and of each backend."""

    backend: str = setting("prior", "generator backend: 'prior' (rendered prior + hole "
                           "filling, the geometric baseline) or 'wan' (Wan 2.1 I2V + EgoX "
                           "LoRA + GGA) or 'remote' (an `egox serve` server runs it)",
                           choices=tuple(BACKENDS))
    prior: PriorConfig = group(PriorConfig, "the ego prior every backend renders first")
    perception: PerceptionConfig = group(PerceptionConfig, "depth and mask models for plain "
                                         "RGB exo cameras (used for what a clip lacks)")
    wan: WanConfig = group(WanConfig, "backend 'wan'")
    remote: RemoteConfig = group(RemoteConfig, "backend 'remote': the `egox serve` server "
                                 "and how to reach it")

    def __post_init__(self) -> None:
        check_settings(self)
        if self.backend == "wan" and not self.wan.model_dir:
            raise ConfigError("backend 'wan' needs a local Wan 2.1 I2V model directory "
                              "(diffusers layout)", key="wan.model_dir", value="")

    def check_clip_shapes(self, num_frames: int, exo_hw: tuple[int, int] | None,
                          ego_hw: tuple[int, int]) -> None:
        """Raise InputError when the backend cannot take clips of this shape; `exo_hw` None
        (not known yet) checks the ego size against itself only."""
        check = _CLIP_SHAPE_CHECKS.get(self.backend)
        if check is not None:
            check(num_frames, exo_hw or ego_hw, ego_hw)

    @property
    def continues_clips(self) -> bool:
        """Whether the backend continues a clip from the previous clip's output of the frames
        they share (`Clip.context`): `wan` with conditioning.previous_output, and `remote`
        (the context goes over the wire; the server's backend decides)."""
        return (self.backend == "wan" and self.wan.conditioning.previous_output
                or self.backend == "remote")

    def check_clip_overlap(self, num_frames: int, overlap: int) -> None:
        """Raise InputError when the backend cannot continue clips of `num_frames` frames
        that share their first `overlap` frames with the clip before (0: no overlap)."""
        check = _CLIP_OVERLAP_CHECKS.get(self.backend)
        if overlap and check is not None:
            check(overlap, num_frames)
