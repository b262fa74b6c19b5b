"""Temporal depth D_v from per-frame estimates: inverse depth aligned frame to frame.

EgoX fuses D_m with a *temporally consistent* relative depth D_v (the official release
uses Video Depth Anything, which transformers does not have). Without such a model, D_v is
built here from per-frame (relative or metric) inverse depth: each frame's own scale and
shift are arbitrary, so frame t is mapped onto the aligned frame t-1 by the robust affine
fit of depth fusion (on static, valid pixels), which removes the per-frame flicker the
fusion's momentum would otherwise average into the wrong scale. For a static camera the
aligned inverse depth is then smoothed per pixel over time where it changes by less than
10 % (larger changes are motion). Structure that flickers inside a frame of a moving camera
is not corrected: this is the weaker choice, and diagnostics say so.
"""
from __future__ import annotations

import numpy as np
import torch

from egox_model.errors import InputError
from egox_model.geometry.depth_fusion import FusionConfig, fit_inverse_affine

__all__ = ["WEAKER_NOTE", "align_inverse_depth", "smooth_static_pixels", "video_depth"]

WEAKER_NOTE = ("D_v = per-frame depth aligned frame to frame (scale and shift in inverse "
               "depth), not a video-consistent depth model: the weaker choice")


def align_inverse_depth(inv: np.ndarray, static: np.ndarray | None = None,
                        config: FusionConfig = FusionConfig()) -> tuple[np.ndarray, dict]:
    """Map every frame of inverse depth `inv` (F, H, W) (0 = invalid) onto frame 0's scale
    and shift: frame t gets a, b of the robust fit aligned[t-1] ~ a inv[t] + b over the
    pixels valid in both and `static` (F, H, W) bool. Frames whose fit fails keep the last
    good (a, b). Returns the aligned inverse depth (invalid stays 0) and the fits."""
    inv = np.asarray(inv, dtype=np.float32)
    if inv.ndim != 3 or inv.shape[0] == 0:
        raise InputError(f"inverse depth must be a non-empty (F, H, W) array, got {inv.shape}")
    if static is not None and static.shape != inv.shape:
        raise InputError(f"static mask shape {static.shape} != depth shape {inv.shape}")
    s = config.sample_stride
    valid = np.isfinite(inv) & (inv > 0)
    aligned = np.where(valid, inv, 0.0).astype(np.float32)
    scale, shift = np.ones(len(inv)), np.zeros(len(inv))
    failed = 0
    a, b = 1.0, 0.0
    for t in range(1, len(inv)):
        sel = valid[t, ::s, ::s] & (aligned[t - 1, ::s, ::s] > 0)
        if static is not None:
            sel &= static[t, ::s, ::s] & static[t - 1, ::s, ::s]
        fa, fb, _, _ = fit_inverse_affine(torch.from_numpy(inv[t, ::s, ::s][sel]),
                                          torch.from_numpy(aligned[t - 1, ::s, ::s][sel]),
                                          config)
        if np.isfinite(fa) and np.isfinite(fb) and fa > 0:
            a, b = fa, fb
        else:
            failed += 1
        scale[t], shift[t] = a, b
        out = a * inv[t] + b
        aligned[t] = np.where(valid[t] & (out > 0), out, 0.0)
    return aligned, {"scale": scale.tolist(), "shift": shift.tolist(), "failed_fits": failed}


def smooth_static_pixels(aligned: np.ndarray, weight: float,
                         tolerance: float = 0.1) -> tuple[np.ndarray, float]:
    """Per-pixel exponential smoothing of aligned inverse depth (F, H, W) of a STATIC
    camera: out[t] = weight out[t-1] + (1 - weight) aligned[t] where both are valid and
    differ by less than `tolerance` (relative); larger changes are motion and are kept as
    they are (no trails behind moving objects). Returns the result and the fraction of
    valid pixels that were smoothed."""
    out = aligned.copy()
    smoothed = valid = 0
    for t in range(1, len(out)):
        prev, cur = out[t - 1], aligned[t]
        both = (prev > 0) & (cur > 0)
        blend = both & (np.abs(cur - prev) <= tolerance * prev)
        out[t] = np.where(blend, weight * prev + (1.0 - weight) * cur, cur)
        smoothed, valid = smoothed + int(blend.sum()), valid + int((cur > 0).sum())
    return out, smoothed / max(valid, 1)


def video_depth(inv: np.ndarray, static: np.ndarray | None = None,
                config: FusionConfig = FusionConfig(), *, smoothing: float = 0.0,
                camera_static: bool = True) -> tuple[np.ndarray, dict]:
    """D_v (F, H, W) float32 for depth fusion from per-frame inverse depth (see
    `align_inverse_depth`; then `smooth_static_pixels` with `smoothing` when the camera is
    static): 1 / result, 0 where invalid; plus diagnostics."""
    aligned, fits = align_inverse_depth(inv, static, config)
    fraction = 0.0
    if smoothing > 0 and camera_static:
        aligned, fraction = smooth_static_pixels(aligned, smoothing)
    with np.errstate(divide="ignore"):
        depth = np.where(aligned > 0, 1.0 / aligned, 0.0).astype(np.float32)
    return depth, {**fits, "smoothed_fraction": round(fraction, 4), "note": WEAKER_NOTE}
