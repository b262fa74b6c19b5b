"""Fuse a metric per-frame depth D_m with a temporally smooth, affine-ambiguous D_v.

Per frame, fit (alpha, beta) in inverse depth so that 1 / D_f = alpha / D_v + beta matches
1 / D_m on static, valid pixels (robust: quantile trimming, then refits on the best residuals),
then smooth (alpha, beta) over time with a bias-corrected exponential moving average.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from egox_model.config import check_settings, setting
from egox_model.errors import ConfigError, InputError

__all__ = ["FusionConfig", "FusionResult", "fit_inverse_affine", "fuse_depth"]


@dataclass(frozen=True)
class FusionConfig:
    """Depth fusion settings (see the module docstring for the fit)."""

    trim_quantiles: tuple[float, float] = setting(
        (0.1, 0.9), "quantiles [lo, hi] of 1/D_m and 1/D_v kept for the first fit (official "
        "release: 10/90 %)", low=0.0, high=1.0)
    inlier_quantile: float = setting(0.7, "fraction of pixels (smallest |residual|) kept by "
                                     "each refit", low=0.0, high=1.0, low_open=True)
    refits: int = setting(3, "robust refits after the first fit", low=0)
    momentum: float = setting(0.99, "EMA weight of the previous frame's (alpha, beta); 0 = "
                              "independent frames", low=0.0, high=1.0, high_open=True)
    sample_stride: int = setting(4, "fit on every n-th row and column (the fit needs few "
                                 "pixels)", low=1)
    min_pixels: int = setting(64, "fewest valid pixels a frame's fit needs", low=2)
    max_depth_m: float = setting(1000.0, "depths beyond this (metres) are invalid", low=0.0,
                                 low_open=True)

    def __post_init__(self) -> None:
        check_settings(self)
        lo, hi = self.trim_quantiles
        if not lo < hi:
            raise ConfigError("must satisfy lo < hi", key="trim_quantiles",
                              value=list(self.trim_quantiles))


@dataclass
class FusionResult:
    """Fused depth (F, H, W) float32 metres (0 = invalid) and per-frame fit diagnostics."""

    depth_m: np.ndarray
    alpha: np.ndarray          # (F,) smoothed alpha used for D_f
    beta: np.ndarray           # (F,) smoothed beta
    alpha_fit: np.ndarray      # (F,) this frame's own robust fit (NaN if it failed)
    beta_fit: np.ndarray
    inliers: np.ndarray        # (F,) pixels in the final fit
    residual_rms: np.ndarray   # (F,) RMS relative inverse-depth residual of the final fit

    def diagnostics(self) -> dict:
        """JSON-ready summary."""
        return {key: getattr(self, key).tolist() for key in
                ("alpha", "beta", "alpha_fit", "beta_fit", "inliers", "residual_rms")}


def _weighted_lstsq(x: torch.Tensor, y: torch.Tensor, w: torch.Tensor) -> tuple[float, float]:
    """Closed-form weighted least squares y = a x + b."""
    sw = w.sum()
    x_mean, y_mean = (w * x).sum() / sw, (w * y).sum() / sw
    dx = x - x_mean
    var = (w * dx * dx).sum()
    if not var > 0:
        return float("nan"), float("nan")
    a = (w * dx * (y - y_mean)).sum() / var
    return float(a), float(y_mean - a * x_mean)


def _within_quantiles(values: torch.Tensor, lo: float, hi: float) -> torch.Tensor:
    """Mask of samples between the lo and hi quantiles (kthvalue: faster than a full sort)."""
    n = values.numel()
    low = torch.kthvalue(values, max(1, int(lo * n))).values
    high = torch.kthvalue(values, max(1, min(n, int(np.ceil(hi * n))))).values
    return (values >= low) & (values <= high)


def fit_inverse_affine(inv_video: torch.Tensor, inv_metric: torch.Tensor,
                       config: FusionConfig = FusionConfig()) -> tuple[float, float, int, float]:
    """Robust fit of inv_metric = alpha * inv_video + beta over 1-D samples.

    First fit: plain least squares on the data-space-trimmed samples. Refits: keep the
    `inlier_quantile` smallest *relative* residuals (depth noise is multiplicative) and weight
    by 1 / prediction^2. Returns (alpha, beta, inliers, relative residual RMS); NaNs when
    there are too few samples.
    """
    x, y = inv_video.double(), inv_metric.double()
    nan = float("nan")
    if x.numel() < config.min_pixels:
        return nan, nan, int(x.numel()), nan
    lo, hi = config.trim_quantiles
    keep = _within_quantiles(x, lo, hi) & _within_quantiles(y, lo, hi)
    if int(keep.sum()) < config.min_pixels:
        keep = torch.ones_like(x, dtype=torch.bool)
    alpha, beta = _weighted_lstsq(x[keep], y[keep], torch.ones_like(x[keep]))
    for _ in range(config.refits):
        if not np.isfinite(alpha):
            break
        pred = alpha * x + beta
        rel = ((y - pred) / pred).abs().nan_to_num(nan=float("inf"))
        k = max(config.min_pixels, int(config.inlier_quantile * rel.numel()))
        keep = rel <= torch.kthvalue(rel, min(k, rel.numel())).values
        alpha, beta = _weighted_lstsq(x[keep], y[keep], 1.0 / pred[keep] ** 2)
    if not np.isfinite(alpha):
        return nan, nan, int(keep.sum()), nan
    pred = alpha * x[keep] + beta
    rms = float((((y[keep] - pred) / pred) ** 2).mean().sqrt())
    return alpha, beta, int(keep.sum()), rms


def fuse_depth(depth_video: np.ndarray, depth_mono_m: np.ndarray,
               static_mask: np.ndarray | None = None,
               config: FusionConfig = FusionConfig()) -> FusionResult:
    """Fuse D_v (F, H, W) with metric D_m (F, H, W); `static_mask` True = use for the fit.

    Invalid (0, NaN, inf, negative) pixels of either input are left out of the fit; the
    output is 0 where D_v is invalid. Frames whose own fit fails use the smoothed parameters.
    """
    depth_video = np.asarray(depth_video, dtype=np.float32)
    depth_mono_m = np.asarray(depth_mono_m, dtype=np.float32)
    if depth_video.ndim != 3 or depth_video.shape[0] == 0:
        raise InputError(f"depth_video must be a non-empty (F, H, W) array, got "
                         f"{depth_video.shape}")
    if depth_mono_m.shape != depth_video.shape:
        raise InputError(f"depth_mono_m shape {depth_mono_m.shape} != depth_video shape "
                         f"{depth_video.shape}")
    if static_mask is not None and static_mask.shape != depth_video.shape:
        raise InputError(f"static_mask shape {static_mask.shape} != depth shape "
                         f"{depth_video.shape}")
    num_frames, s = depth_video.shape[0], config.sample_stride
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_v = 1.0 / depth_video[:, ::s, ::s]
        inv_m = 1.0 / depth_mono_m[:, ::s, ::s]
    usable = (np.isfinite(inv_v) & (inv_v > 0) & np.isfinite(inv_m)
              & (inv_m >= 1.0 / config.max_depth_m))
    if static_mask is not None:
        usable &= np.asarray(static_mask, dtype=bool)[:, ::s, ::s]

    fits = np.full((num_frames, 2), np.nan)
    smoothed = np.full((num_frames, 2), np.nan)
    inliers = np.zeros(num_frames, dtype=np.int64)
    rms = np.full(num_frames, np.nan)
    ema, weight = np.zeros(2), 0.0
    for f in range(num_frames):
        sel = usable[f]
        a, b, n, r = fit_inverse_affine(torch.from_numpy(inv_v[f][sel]),
                                        torch.from_numpy(inv_m[f][sel]), config)
        fits[f], inliers[f], rms[f] = (a, b), n, r
        if np.isfinite(a) and np.isfinite(b):
            ema = config.momentum * ema + (1.0 - config.momentum) * np.array([a, b])
            weight = config.momentum * weight + (1.0 - config.momentum)
        if weight > 0:
            smoothed[f] = ema / weight          # bias-corrected EMA
    if not np.isfinite(smoothed).any():
        raise InputError("depth fusion failed on every frame: too few valid static pixels "
                         "where both depth_video and depth_mono_m are positive and finite")
    first = int(np.argmax(np.isfinite(smoothed[:, 0])))
    smoothed[:first] = smoothed[first]          # frames before the first successful fit

    # D_f = 1 / (alpha / D_v + beta) = D_v / (alpha + beta * D_v), in one pass.
    dv = torch.from_numpy(depth_video)
    alpha_t = torch.from_numpy(smoothed[:, 0]).float()[:, None, None]
    beta_t = torch.from_numpy(smoothed[:, 1]).float()[:, None, None]
    fused = dv / torch.addcmul(alpha_t, beta_t, dv)
    fused = torch.where((dv > 0) & (fused > 0) & (fused < config.max_depth_m), fused, 0.0)
    return FusionResult(fused.numpy(), smoothed[:, 0].copy(), smoothed[:, 1].copy(),
                        fits[:, 0].copy(), fits[:, 1].copy(), inliers, rms)
