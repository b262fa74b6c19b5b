"""`Perception`: fill in what a clip of a plain RGB exo camera lacks, before the prior.

For a clip without depth: D_m from `perception.depth_model` (metric), D_v from
`perception.video_depth_model` (or from D_m) aligned frame to frame (`temporal`), both
handed to the prior's depth fusion. For a clip without masks, with `perception.mask_model`:
text-prompted masks; without one, the prior computes motion masks (compensated for a moving
exo camera). `PerceivingGenerator` runs this in front of any backend, so the node's worker,
`egox convert`, `egox generate` and the demo all get it from one place (`with_perception`).
"""
from __future__ import annotations

import dataclasses

from egox_model.clip import Clip
from egox_model.errors import ConfigError, InputError
from egox_model.generator.base import Generator, StepCallback
from egox_model.geometry.depth_fusion import FusionConfig
from egox_model.geometry.dynamic import camera_moves
from egox_model.output import GeneratorOutput
from egox_model.perception.base import DepthEstimator, MaskEstimator
from egox_model.perception.config import PerceptionConfig
from egox_model.perception.temporal import WEAKER_NOTE, video_depth
from egox_model.timing import stage_timer

__all__ = ["Perception", "PerceivingGenerator", "has_depth", "with_perception"]


def has_depth(clip: Clip) -> bool:
    """The clip has metric exo depth, or D_m and D_v to fuse."""
    return clip.exo_depth_m is not None or (clip.exo_depth_mono_m is not None
                                            and clip.exo_depth_video is not None)


class Perception:
    """Loaded estimators (any may be None) and the settings they run with."""

    def __init__(self, depth: DepthEstimator | None = None,
                 video_depth: DepthEstimator | None = None, masks: MaskEstimator | None = None,
                 *, phrases: list[str] | tuple[str, ...] = (),
                 fusion: FusionConfig = FusionConfig(), video_smoothing: float = 0.0) -> None:
        if depth is not None and depth.kind != "metric":
            raise ConfigError("the per-frame depth model must predict metric depth (D_m); a "
                              "relative model belongs in perception.video_depth_model",
                              key="perception.depth_model")
        self.depth, self.video_depth, self.masks = depth, video_depth, masks
        self.phrases, self.fusion = list(phrases), fusion
        self.video_smoothing = video_smoothing

    @classmethod
    def from_config(cls, config: PerceptionConfig,
                    fusion: FusionConfig = FusionConfig()) -> Perception:
        """Load the configured models (ModelLoadError naming the setting and file)."""
        from egox_model.perception.depth import load_depth_estimator

        common = {"device": config.device, "dtype": config.dtype}
        depth = video = masks = None
        if config.depth_model:
            depth = load_depth_estimator(config.depth_model, "perception.depth_model",
                                         batch_size=config.batch_size, require_metric=True,
                                         **common)
        if config.video_depth_model:
            video = load_depth_estimator(config.video_depth_model,
                                         "perception.video_depth_model",
                                         batch_size=config.batch_size, **common)
        if config.mask_model:
            from egox_model.perception.masks import TextMaskEstimator
            from egox_model.perception.sam3 import load_sam3_segmenter

            masks = TextMaskEstimator(load_sam3_segmenter(config.mask_model, **common),
                                      config.mask_dilate_px)
        return cls(depth, video, masks, phrases=config.mask_phrases, fusion=fusion,
                   video_smoothing=config.video_smoothing)

    def info(self) -> dict:
        """What is configured, with licences (for diagnostics and reports)."""
        info: dict = {}
        if self.depth is not None:
            info["depth_model"] = self.depth.info
        if self.depth is not None or self.video_depth is not None:
            source = self.video_depth or self.depth
            info["video_depth"] = {**source.info, "source": "video_depth_model"
                                   if self.video_depth is not None else "depth_model"}
        info["masks"] = (self.masks.info if self.masks is not None
                         else "motion masks (camera motion compensated)")
        return info

    def summary(self) -> dict[str, str]:
        """One line per model (what it is, its licence; D_v's weaker-choice note), for
        /diagnostics key-values."""
        lines: dict[str, str] = {}
        if self.depth is not None:
            lines["depth_model"] = f"{self.depth.info.get('model_type')} " \
                                   f"[{self.depth.info.get('licence')}]"
        if self.depth is not None or self.video_depth is not None:
            source = self.video_depth or self.depth
            lines["video_depth"] = f"{source.info.get('model_type')} " \
                                   f"[{source.info.get('licence')}]: {WEAKER_NOTE}"
        lines["masks"] = (f"{self.masks.info.get('model_type')} "
                          f"[{self.masks.info.get('licence')}] prompted with "
                          f"{', '.join(self.phrases)}" if self.masks is not None
                          else "motion masks (camera motion compensated)")
        return lines

    def complete(self, clip: Clip, timings: dict[str, float] | None = None
                 ) -> tuple[Clip, dict]:
        """The clip with the depth and masks it lacked estimated, and diagnostics; a clip
        that lacks nothing this perception can give comes back unchanged."""
        timings = {} if timings is None else timings
        num = clip.num_frames
        fields: dict = {}
        diagnostics: dict = {}
        if clip.dynamic_mask is None and self.masks is not None:
            with stage_timer(timings, "perception_masks", num):
                fields["dynamic_mask"] = self.masks.estimate(clip.exo_rgb, self.phrases)
            diagnostics["masks"] = {**self.masks.info, **getattr(self.masks, "last", {})}
        if not has_depth(clip):
            if self.depth is None:
                raise InputError("the clip has no exo depth (no depth topic / --exo-depth) and "
                                 "perception.depth_model is not set: give depth, or a local "
                                 "metric depth model directory to estimate it")
            with stage_timer(timings, "perception_depth", num):
                mono = self.depth.estimate(clip.exo_rgb, clip.exo_K)
            if self.video_depth is not None:
                with stage_timer(timings, "perception_video_depth", num):
                    inverse = self.video_depth.estimate(clip.exo_rgb,
                                                        clip.exo_K).inverse_depth()
            else:
                inverse = mono.inverse_depth()
            mask = fields.get("dynamic_mask", clip.dynamic_mask)
            with stage_timer(timings, "perception_align", num):
                depth_video, align = video_depth(inverse, None if mask is None else ~mask,
                                                 self.fusion, smoothing=self.video_smoothing,
                                                 camera_static=not camera_moves(clip.exo_c2w))
            fields["exo_depth_mono_m"] = mono.values
            fields["exo_depth_video"] = depth_video
            diagnostics["depth_model"] = self.depth.info
            diagnostics["video_depth"] = {
                "source": "video_depth_model" if self.video_depth else "depth_model",
                **(self.video_depth.info if self.video_depth else {}),
                "note": align["note"], "failed_fits": align["failed_fits"],
                "smoothed_fraction": align["smoothed_fraction"]}
        if not fields:
            return clip, diagnostics
        return dataclasses.replace(clip, **fields), diagnostics


class PerceivingGenerator(Generator):
    """A backend with `Perception` in front: generate(clip) = backend(perception(clip))."""

    def __init__(self, backend: Generator, perception: Perception) -> None:
        self.backend, self.perception = backend, perception

    @property
    def name(self) -> str:
        """The backend's name."""
        return self.backend.name

    @classmethod
    def from_config(cls, config) -> PerceivingGenerator:
        """Not built from a config: see `with_perception`."""
        raise TypeError("use with_perception(make_generator(config), config)")

    def generate(self, clip: Clip, *, callback: StepCallback | None = None) -> GeneratorOutput:
        """Estimate what the clip lacks, then run the backend; timings and diagnostics of
        the perception stage are added to the output's."""
        timings: dict[str, float] = {}
        clip, diagnostics = self.perception.complete(clip, timings)
        output = self.backend.generate(clip, callback=callback)
        output.ms_per_frame = {**timings, **output.ms_per_frame}
        if diagnostics:
            output.diagnostics = {**output.diagnostics, "perception": diagnostics}
        return output

    def __getattr__(self, name: str):
        """Everything else is the backend's (e.g. `status` of backend 'remote')."""
        if name in ("backend", "perception"):        # not set yet: no recursion
            raise AttributeError(name)
        return getattr(self.backend, name)


def with_perception(generator: Generator, config) -> Generator:
    """`generator` behind the perception of `config` (a GeneratorConfig or EgoxConfig), or
    unchanged when no perception model is configured. `depth_source: estimate` (node
    settings) without perception.depth_model is a ConfigError."""
    perception: PerceptionConfig = config.perception
    if getattr(config, "depth_source", "") == "estimate" and not perception.depth_model:
        raise ConfigError("depth_source 'estimate' needs a local metric depth model directory",
                          key="perception.depth_model", value="")
    if not perception.enabled:
        return generator
    return PerceivingGenerator(generator,
                               Perception.from_config(perception, config.prior.fusion))
