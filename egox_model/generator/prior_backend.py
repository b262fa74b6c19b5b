"""Backend `prior`: the rendered ego prior with classical hole filling.

The geometric baseline, not the diffusion model: every output says so in its diagnostics.
Uncovered pixels are inpainted (OpenCV Telea) at 1/4 resolution, where large holes are
cheap, and upsampled; covered pixels keep the prior exactly.
"""
from __future__ import annotations

import cv2
import numpy as np

from egox_model.clip import Clip
from egox_model.generator.base import Generator, GeneratorOutput, StepCallback
from egox_model.prior import PriorConfig, render_ego_prior, stage_timer

__all__ = ["PriorGenerator", "inpaint_uncovered"]


def inpaint_uncovered(rgb: np.ndarray, covered: np.ndarray, downscale: int = 4,
                      radius_px: int = 3) -> np.ndarray:
    """Fill the uncovered pixels of one (H, W, 3) uint8 frame; covered (H, W) bool."""
    if covered.all():
        return rgb.copy()
    height, width = covered.shape
    if not covered.any():
        return np.zeros_like(rgb)
    small_size = (max(1, width // downscale), max(1, height // downscale))
    weight = cv2.resize(covered.astype(np.float32), small_size, interpolation=cv2.INTER_AREA)
    small = cv2.resize(rgb.astype(np.float32) * covered[..., None], small_size,
                       interpolation=cv2.INTER_AREA)
    small = np.where(weight[..., None] > 0, small / np.maximum(weight[..., None], 1e-6), 0)
    holes = (weight < 0.5).astype(np.uint8)
    filled = cv2.inpaint(small.round().astype(np.uint8), holes, radius_px, cv2.INPAINT_TELEA)
    filled = cv2.resize(filled, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.where(covered[..., None], rgb, filled)


class PriorGenerator(Generator):
    """The ego prior, hole-filled: a fast CPU baseline and the fallback backend."""

    name = "prior"

    def __init__(self, prior_config: PriorConfig = PriorConfig()) -> None:
        self.prior_config = prior_config

    def generate(self, clip: Clip, *, callback: StepCallback | None = None) -> GeneratorOutput:
        """Render the prior of `clip` and inpaint what the exo camera never saw."""
        prior = render_ego_prior(clip, self.prior_config)
        if callback is not None:
            callback(0, 2)
        timings = dict(prior.ms_per_frame)
        with stage_timer(timings, "inpaint", clip.num_frames):
            ego = np.stack([inpaint_uncovered(rgb, mask) for rgb, mask in
                            zip(prior.rgb, prior.mask)])
        if callback is not None:
            callback(1, 2)
        return GeneratorOutput(
            ego_rgb=ego, prior=prior, backend=self.name, stamps_ns=clip.stamps_ns,
            ms_per_frame=timings,
            diagnostics={"note": "geometric baseline (rendered prior + OpenCV inpainting), "
                                 "not the diffusion model",
                         "coverage": float(prior.mask.mean())})
