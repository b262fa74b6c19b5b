"""The ego prior: depth fusion -> lift static exo pixels -> render at every ego pose.

This is step 1-2 of EgoX, shared by every generator backend.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import numpy as np
import torch

from egox_model.clip import Clip
from egox_model.generator.base import EgoPrior
from egox_model.geometry.depth_fusion import FusionConfig, fuse_depth
from egox_model.geometry.dynamic import MotionMaskConfig, motion_masks
from egox_model.geometry.pointcloud import LiftConfig, lift_points
from egox_model.geometry.render import RenderConfig, render_points

__all__ = ["PriorConfig", "render_ego_prior", "stage_timer"]


@dataclass(frozen=True)
class PriorConfig:
    """Settings of every prior stage; `device` is where lifting and rendering run."""

    fusion: FusionConfig = field(default_factory=FusionConfig)
    lift: LiftConfig = field(default_factory=LiftConfig)
    render: RenderConfig = field(default_factory=RenderConfig)
    motion: MotionMaskConfig = field(default_factory=MotionMaskConfig)
    device: str = "cpu"


@contextmanager
def stage_timer(timings_ms: dict[str, float], stage: str, num_frames: int) -> Iterator[None]:
    """Record the wall time of a block as milliseconds per frame under `stage`."""
    start = time.perf_counter()
    yield
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    timings_ms[stage] = (time.perf_counter() - start) * 1e3 / num_frames


def render_ego_prior(clip: Clip, config: PriorConfig = PriorConfig()) -> EgoPrior:
    """Fuse depth (unless the clip has metric depth), lift, and render the ego prior."""
    timings: dict[str, float] = {}
    num_frames = clip.num_frames
    dynamic = clip.dynamic_mask
    if dynamic is None:
        with stage_timer(timings, "dynamic_mask", num_frames):
            dynamic = motion_masks(clip.exo_rgb, config.motion)
    static = ~dynamic

    fusion: dict = {}
    if clip.exo_depth_m is not None:
        depth_m = np.nan_to_num(clip.exo_depth_m, nan=0.0, posinf=0.0, neginf=0.0)
    else:
        with stage_timer(timings, "fusion", num_frames):
            result = fuse_depth(clip.exo_depth_video, clip.exo_depth_mono_m, static,
                                config.fusion)
        depth_m, fusion = result.depth_m, result.diagnostics()

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
