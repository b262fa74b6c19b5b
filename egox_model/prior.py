"""The ego prior: depth fusion -> lift static exo pixels -> render at every ego pose.

Steps 1-2 of EgoX, shared by every generator backend (which import it from here).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from egox_model.clip import Clip
from egox_model.config import check_device, check_settings, group, setting
from egox_model.errors import InputError
from egox_model.geometry.depth_fusion import FusionConfig, fuse_depth
from egox_model.geometry.dynamic import MotionMaskConfig, motion_masks
from egox_model.geometry.plane_scale import PlaneScaleConfig, plane_correction
from egox_model.geometry.pointcloud import LiftConfig, lift_points
from egox_model.geometry.render import RenderConfig, render_points
from egox_model.timing import stage_timer

__all__ = ["EgoPrior", "PriorConfig", "render_ego_prior"]


@dataclass(frozen=True)
class PriorConfig:
    """Settings of every prior stage."""

    fusion: FusionConfig = group(FusionConfig, "depth fusion of D_m and D_v (skipped when a "
                                 "metric depth topic is used)")
    plane: PlaneScaleConfig = group(PlaneScaleConfig, "metric scale of fused depth from a "
                                    "horizontal plane at a known height (D_m's scale error "
                                    "moves the whole prior; docs/prior.md)")
    lift: LiftConfig = group(LiftConfig, "which exo pixels become world points")
    render: RenderConfig = group(RenderConfig, "z-buffered splatting at the ego poses")
    motion: MotionMaskConfig = group(MotionMaskConfig, "motion masks, used when no dynamic-"
                                     "object masks are given (compensated for a moving exo "
                                     "camera)")
    device: str = setting("cpu", "where lifting and rendering run: 'cpu', 'cuda' or "
                          "'cuda:N'")

    def __post_init__(self) -> None:
        check_settings(self)
        check_device(self.device, allow_auto=False)


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


def render_ego_prior(clip: Clip, config: PriorConfig = PriorConfig()) -> EgoPrior:
    """Fuse depth (unless the clip has metric depth), lift, and render the ego prior."""
    timings: dict[str, float] = {}
    num_frames = clip.num_frames
    if clip.exo_depth_m is None and clip.exo_depth_video is None:
        raise InputError("the clip has no exo depth: give a depth topic / --exo-depth, or set "
                         "perception.depth_model to estimate it (docs/perception.md)")
    dynamic = clip.dynamic_mask
    if dynamic is None:
        # A moving exo camera: compensate its motion with the metric depth at hand.
        depth = clip.exo_depth_m if clip.exo_depth_m is not None else clip.exo_depth_mono_m
        with stage_timer(timings, "dynamic_mask", num_frames):
            dynamic = motion_masks(clip.exo_rgb, config.motion, depth_m=depth, K=clip.exo_K,
                                   c2w=clip.exo_c2w, device=config.device)
    static = ~dynamic

    fusion: dict = {}
    if clip.exo_depth_m is not None:
        depth_m = np.nan_to_num(clip.exo_depth_m, nan=0.0, posinf=0.0, neginf=0.0)
    else:
        with stage_timer(timings, "fusion", num_frames):
            result = fuse_depth(clip.exo_depth_video, clip.exo_depth_mono_m, static,
                                config.fusion)
            depth_m, fusion = result.depth_m, result.diagnostics()
            if config.plane.enabled:
                plane = plane_correction(depth_m, static & (depth_m > 0), clip.exo_K,
                                         clip.exo_c2w, config.plane)
                depth_m = plane.apply(depth_m)
                fusion["plane"] = plane.diagnostics()

    with stage_timer(timings, "lift", num_frames):
        cloud = lift_points(clip.exo_rgb, depth_m, clip.exo_K, clip.exo_c2w, static,
                            config.lift).to(config.device)
    with stage_timer(timings, "render", num_frames):
        rendered = render_points(cloud, clip.ego_K, clip.ego_c2w, config.render,
                                 device=config.device)
        rgb, depth, mask = (t.cpu().numpy() for t in
                            (rendered.rgb, rendered.depth_m, rendered.mask))
    fusion["points"] = len(cloud)
    return EgoPrior(rgb=rgb, depth_m=depth, mask=mask, exo_depth_m=depth_m, exo_static=static,
                    fusion=fusion, ms_per_frame=timings)
