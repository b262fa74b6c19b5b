"""`PerceptionConfig`: the model directories, devices and dtypes of the perception stage.

A group of the generator's config tree (`perception.*`), so `egox generate`, `egox demo`,
the node's ROS parameters and `egox convert` all take the same settings. Directories are
only checked when the models are loaded (`egox_model.perception.model_dir`): a config with
a path that does not exist yet is a valid config.
"""
from __future__ import annotations

from dataclasses import dataclass

from egox_model.config import check_device, check_settings, setting
from egox_model.errors import ConfigError

__all__ = ["DEFAULT_PHRASES", "PerceptionConfig"]

#: Text prompts of the mask model: what moves in front of a robot's exo camera.
DEFAULT_PHRASES = ["person", "robot", "arm", "hand"]


@dataclass(frozen=True)
class PerceptionConfig:
    """Depth and dynamic-object mask estimation for plain RGB exo cameras (docs/perception.md).

    Used only for what a clip lacks: clips with a depth topic / depth file skip the depth
    models, clips with masks skip the mask model.
    """

    depth_model: str = setting("", "local directory of the per-frame METRIC depth model D_m "
                               "(transformers DepthProForDepthEstimation, or "
                               "DepthAnythingForDepthEstimation with depth_estimation_type "
                               "'metric'); '' = no depth estimation")
    video_depth_model: str = setting("", "local directory of the relative depth model for "
                                     "D_v (Depth Anything V2; Small is Apache-2.0, Base/Large "
                                     "CC-BY-NC-4.0); '' = D_v from depth_model's output. "
                                     "Either way D_v is per-frame depth aligned frame to "
                                     "frame, weaker than a video-consistent model")
    video_smoothing: float = setting(0.5, "static exo camera: per-pixel exponential smoothing "
                                     "weight of D_v's previous frame (changes above 10 % are "
                                     "motion and kept); 0 = off", low=0.0, high=1.0,
                                     high_open=True)
    mask_model: str = setting("", "local directory of a text-prompted video segmenter "
                              "(transformers Sam3VideoModel + its processor); '' = motion "
                              "masks (compensated for a moving exo camera)")
    mask_phrases: list[str] = setting(DEFAULT_PHRASES, "text prompts of the dynamic objects "
                                      "the mask model segments")
    mask_dilate_px: int = setting(4, "dilation radius (exo pixels) of the estimated masks",
                                  low=0)
    device: str = setting("auto", "where the models run: 'auto' (cuda if present), 'cpu', "
                          "'cuda' or 'cuda:N'")
    dtype: str = setting("auto", "model dtype: 'auto' (bfloat16 on GPU, float32 on CPU), "
                         "'bfloat16', 'float16' or 'float32'",
                         choices=("auto", "bfloat16", "float16", "float32"))
    batch_size: int = setting(8, "frames per depth-model forward pass", low=1)

    def __post_init__(self) -> None:
        check_settings(self)
        check_device(self.device)
        if not all(p.strip() for p in self.mask_phrases):
            raise ConfigError("phrases must be non-empty text", key="mask_phrases",
                              value=list(self.mask_phrases))
        if self.mask_model and not self.mask_phrases:
            raise ConfigError("a mask model needs at least one phrase", key="mask_phrases",
                              value=[])

    @property
    def enabled(self) -> bool:
        """True when any model is configured."""
        return bool(self.depth_model or self.video_depth_model or self.mask_model)
