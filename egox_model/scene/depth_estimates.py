"""Synthetic depth estimates with known fusion parameters, to exercise depth fusion.

D_m (metric, per frame): ground truth x a per-frame scale jitter x pixel noise, plus
outliers, as a monocular metric estimator behaves. D_v (video): ground-truth inverse depth
through a slowly drifting affine map, as a temporally consistent relative estimator:
1 / D_v = a_t / D + b_t, so the exact fusion parameters are alpha_t = 1 / a_t and
beta_t = -b_t / a_t. By default D_v is exact up to that map; `video_warp` adds the shape
error a real relative model has (a smooth distortion, the same in every frame, up to
+/- video_warp relative) and `video_noise` per-pixel noise, which no affine fit removes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["DepthEstimates", "synthetic_depth_estimates"]


@dataclass
class DepthEstimates:
    """depth_mono_m and depth_video (F, H, W) float32, and the exact alpha/beta (F,)."""

    depth_mono_m: np.ndarray
    depth_video: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray


def synthetic_depth_estimates(depth_m: np.ndarray, seed: int = 0, *,
                              scale_jitter: float = 0.03, pixel_noise: float = 0.02,
                              outlier_fraction: float = 0.05, drift: float = 0.01,
                              video_warp: float = 0.0,
                              video_noise: float = 0.0) -> DepthEstimates:
    """Estimates of ground-truth depth_m (F, H, W); 0 in depth_m stays invalid in both."""
    rng = np.random.default_rng(seed)
    num_frames = depth_m.shape[0]
    valid = depth_m > 0
    scale = 1.0 + scale_jitter * rng.standard_normal(num_frames)
    mono = depth_m * scale[:, None, None]
    mono *= 1.0 + pixel_noise * rng.standard_normal(depth_m.shape)
    outliers = rng.random(depth_m.shape) < outlier_fraction
    mono[outliers] = rng.uniform(0.3, 12.0, int(outliers.sum()))
    mono[~valid] = 0.0

    t = np.linspace(0.0, 1.0, num_frames)
    a = 0.5 * (1.0 + drift * np.sin(2 * np.pi * t + rng.uniform(0, 2 * np.pi)))
    b = np.full(num_frames, 0.02)
    with np.errstate(divide="ignore"):
        inv_video = a[:, None, None] / depth_m + b[:, None, None]
        video = np.where(valid, 1.0 / inv_video, 0.0)
    if video_warp or video_noise:
        video = video * (1.0 + video_warp * _smooth_field(depth_m.shape[1:], rng))
        video *= 1.0 + video_noise * rng.standard_normal(depth_m.shape)
    return DepthEstimates(mono.astype(np.float32), video.astype(np.float32), 1.0 / a, -b / a)


def _smooth_field(shape: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """(H, W) smooth random field with max |value| 1: three plane waves with wavelengths of
    half to twice the image width, random directions and phases."""
    rows, cols = np.mgrid[0:shape[0], 0:shape[1]] / max(shape)
    field = np.zeros(shape)
    for _ in range(3):
        angle, phase = rng.uniform(0, 2 * np.pi, 2)
        frequency = rng.uniform(0.5, 2.0)
        field += np.cos(2 * np.pi * frequency * (np.cos(angle) * cols + np.sin(angle) * rows)
                        + phase)
    return field / np.abs(field).max()
