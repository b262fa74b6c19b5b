"""Fuse a metric per-frame depth D_m with a temporally smooth, affine-ambiguous D_v.

Per frame, fit (alpha, beta) in inverse depth so that 1 / D_f = alpha / D_v + beta matches
1 / D_m on static, valid pixels (robust: quantile trimming, then refits on the best residuals;
all frames at once), then smooth (alpha, beta) over the clip: each frame takes the mean of
every frame's fit weighted by momentum^|frame distance|. A clip is fused whole, so the
window looks both ways: every frame's parameters average the whole clip's metric evidence
(a causal EMA would leave the first frames with their own fit's scale error).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from egox_model.config import check_settings, setting
from egox_model.errors import ConfigError, InputError

__all__ = ["FusionConfig", "FusionResult", "fit_inverse_affine", "fuse_depth",
           "smooth_over_clip"]


@dataclass(frozen=True)
class FusionConfig:
    """Depth fusion settings (see the module docstring for the fit)."""

    trim_quantiles: tuple[float, float] = setting(
        (0.1, 0.9), "quantiles [lo, hi] of 1/D_m and 1/D_v kept for the first fit (official "
        "release: 10/90 %)", low=0.0, high=1.0)
    inlier_quantile: float = setting(0.7, "fraction of pixels (smallest |residual|) kept by "
                                     "each refit", low=0.0, high=1.0, low_open=True)
    refits: int = setting(3, "robust refits after the first fit", low=0)
    momentum: float = setting(0.99, "temporal smoothing of (alpha, beta): frame f averages "
                              "every frame k's fit with weight momentum^|f - k| (both ways; "
                              "0 = independent frames)", low=0.0, high=1.0, high_open=True)
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


def _weighted_lstsq(x: torch.Tensor, y: torch.Tensor,
                    w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-row closed-form weighted least squares y = a x + b over (F, N) samples; rows
    without spread in x give NaN."""
    sw = w.sum(1, keepdim=True)
    x_mean, y_mean = (w * x).sum(1, keepdim=True) / sw, (w * y).sum(1, keepdim=True) / sw
    dx = x - x_mean
    var = (w * dx * dx).sum(1, keepdim=True)
    a = (w * dx * (y - y_mean)).sum(1, keepdim=True) / var
    a = torch.where(var > 0, a, torch.nan)
    return a, y_mean - a * x_mean


def _row_kth(values: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """(F, 1) k-th smallest (1-based, k (F,) long) of each row of (F, N): one kthvalue call
    per distinct k (rows with the same pixel count share one)."""
    out = torch.empty(len(values), 1, dtype=values.dtype)
    for kk in k.unique().tolist():
        rows = k == kk
        out[rows] = torch.kthvalue(values[rows], kk, dim=1, keepdim=True).values
    return out


def _fit_rows(x: torch.Tensor, y: torch.Tensor, usable: torch.Tensor,
              config: FusionConfig) -> tuple[torch.Tensor, ...]:
    """Robust fit y = alpha x + beta of every row of (F, N) float64 samples where `usable`.

    First fit: plain least squares on the data-space-trimmed samples. Refits: keep the
    `inlier_quantile` smallest *relative* residuals (depth noise is multiplicative) and weight
    by 1 / prediction^2. Returns (alpha, beta, inliers, relative residual RMS), each (F,);
    NaN for rows with too few samples or no fit.
    """
    n = usable.sum(1)
    x, y = torch.where(usable, x, 1.0), torch.where(usable, y, 1.0)
    lo, hi = config.trim_quantiles

    def within(values: torch.Tensor) -> torch.Tensor:
        ranked = torch.where(usable, values, torch.inf)
        low = _row_kth(ranked, (lo * n).long().clamp(min=1))
        high = _row_kth(ranked, torch.ceil(hi * n).long().clamp(1).minimum(n.clamp(min=1)))
        return (values >= low) & (values <= high)

    keep = usable & within(x) & within(y)
    keep = torch.where((keep.sum(1) < config.min_pixels)[:, None], usable, keep)
    alpha, beta = _weighted_lstsq(x, y, keep.double())
    k = (config.inlier_quantile * n).long().clamp(min=config.min_pixels).minimum(n).clamp(min=1)
    for _ in range(config.refits):
        pred = alpha * x + beta
        rel = ((y - pred) / pred).abs().nan_to_num(nan=torch.inf)
        rel = torch.where(usable, rel, torch.inf)
        keep = usable & (rel <= _row_kth(rel, k))
        alpha, beta = _weighted_lstsq(x, y, keep / pred.square())
    pred = alpha * x + beta
    rms = (torch.where(keep, ((y - pred) / pred).square(), 0.0).sum(1)
           / keep.sum(1)).sqrt()
    failed = (n < config.min_pixels) | ~torch.isfinite(alpha[:, 0]) | ~torch.isfinite(rms)
    alpha, beta, rms = (torch.where(failed, torch.nan, t.reshape(-1)) for t in (alpha, beta, rms))
    inliers = torch.where(n < config.min_pixels, n, keep.sum(1))
    return alpha, beta, inliers, rms


def fit_inverse_affine(inv_video: torch.Tensor, inv_metric: torch.Tensor,
                       config: FusionConfig = FusionConfig()) -> tuple[float, float, int, float]:
    """Robust fit of inv_metric = alpha * inv_video + beta over 1-D samples (see
    `_fit_rows`). Returns (alpha, beta, inliers, relative residual RMS); NaNs when there are
    too few samples."""
    x, y = inv_video.double()[None], inv_metric.double()[None]
    alpha, beta, inliers, rms = _fit_rows(x, y, torch.ones_like(x, dtype=torch.bool), config)
    return float(alpha[0]), float(beta[0]), int(inliers[0]), float(rms[0])


def smooth_over_clip(fits: np.ndarray, momentum: float) -> np.ndarray:
    """(F, P) per-frame parameters (NaN rows = failed fits) -> (F, P): row f is the mean of
    the finite rows k weighted by momentum^|f - k|; a row with no weight (momentum 0 at a
    failed frame) takes its nearest finite row (the earlier one on ties)."""
    frames = np.arange(len(fits))
    ok = np.isfinite(fits).all(1)
    if not ok.any():
        return np.full_like(fits, np.nan)
    distance = np.abs(frames[:, None] - frames[None, :])
    weight = np.where(ok[None, :], float(momentum) ** distance, 0.0)
    total = weight.sum(1)
    nearest = np.where(ok[None, :], distance, len(fits)).argmin(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        smoothed = (weight @ np.nan_to_num(fits)) / total[:, None]
    return np.where(total[:, None] > 0, smoothed, fits[nearest])


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
    inv_v = 1.0 / torch.from_numpy(depth_video[:, ::s, ::s].reshape(num_frames, -1)).double()
    inv_m = 1.0 / torch.from_numpy(depth_mono_m[:, ::s, ::s].reshape(num_frames, -1)).double()
    usable = (torch.isfinite(inv_v) & (inv_v > 0) & torch.isfinite(inv_m)
              & (inv_m >= 1.0 / config.max_depth_m))
    if static_mask is not None:
        usable &= torch.from_numpy(np.ascontiguousarray(
            static_mask[:, ::s, ::s], dtype=bool).reshape(num_frames, -1))
    alpha_fit, beta_fit, inliers, rms = _fit_rows(inv_v, inv_m, usable, config)
    fits = torch.stack((alpha_fit, beta_fit), 1).numpy()
    smoothed = smooth_over_clip(fits, config.momentum)
    if not np.isfinite(smoothed).any():
        raise InputError("depth fusion failed on every frame: too few valid static pixels "
                         "where both depth_video and depth_mono_m are positive and finite")

    # D_f = 1 / (alpha / D_v + beta) = D_v / (alpha + beta * D_v), in place.
    dv = torch.from_numpy(depth_video)
    alpha_t = torch.from_numpy(smoothed[:, 0]).float()[:, None, None]
    beta_t = torch.from_numpy(smoothed[:, 1]).float()[:, None, None]
    fused = torch.addcmul(alpha_t, beta_t, dv)
    torch.div(dv, fused, out=fused)
    fused.masked_fill_(~((dv > 0) & (fused > 0) & (fused < config.max_depth_m)), 0.0)
    return FusionResult(fused.numpy(), smoothed[:, 0].copy(), smoothed[:, 1].copy(),
                        fits[:, 0].copy(), fits[:, 1].copy(), inliers.numpy(), rms.numpy())
