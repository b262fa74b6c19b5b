"""Metric scale of fused exo depth from a horizontal plane at a known world height.

Fusion takes its metric scale from D_m, a monocular estimate whose scale is off by a few %,
and that error moves the whole prior: 0.5 % at 1.6 m is 8 mm, several ego pixels of a
fine texture seen from closer (docs/prior.md). Where the exo camera sees a horizontal plane
at a known height (a table top, the floor; world frame REP 103, z up), the plane fixes the
scale: scaling depth about the camera centre C keeps planes planar and horizontal, so every
pixel i of the plane implies the same correction s_i = (z_plane - C_z) / dz_i, where dz_i is
its fused point's world height above C. The plane is the largest group of lifted pixels
sharing one implied correction (a histogram mode of log s_i within the accepted range);
other horizontal surfaces imply other corrections, slanted ones spread over many.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from egox_model.config import check_settings, setting
from egox_model.geometry.camera import Intrinsics
from egox_model.geometry.projection import backproject

__all__ = ["PlaneScale", "PlaneScaleConfig", "plane_scale"]


@dataclass(frozen=True)
class PlaneScaleConfig:
    """Rescaling of fused depth to a known plane (see the module docstring)."""

    enabled: bool = setting(False, "rescale the fused exo depth so that a horizontal plane "
                            "the exo camera sees lies at height z_m (estimated depth only; "
                            "a depth topic is metric already)")
    z_m: float = setting(0.0, "world height of that plane (metres, world frame z up): the "
                         "table top or the floor")
    max_correction: float = setting(0.2, "largest accepted change of scale (fraction): a "
                                    "plane implying more is another surface", low=0.0,
                                    low_open=True, high=0.9)
    bin_width: float = setting(0.005, "histogram bin of the implied log-scale: how closely "
                               "the plane's pixels must agree", low=0.0, low_open=True)
    min_fraction: float = setting(0.05, "fewest lifted pixels (fraction) on the plane for "
                                  "its scale to be used", low=0.0, high=1.0, low_open=True)
    sample_stride: int = setting(4, "use every n-th row and column", low=1)

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True)
class PlaneScale:
    """The correction found (1.0 and found=False when no plane qualified) and the fraction
    of the sampled lifted pixels on the plane."""

    scale: float
    found: bool
    plane_fraction: float


def plane_scale(depth_m: np.ndarray, valid: np.ndarray, K: Intrinsics, c2w: np.ndarray,
                config: PlaneScaleConfig) -> PlaneScale:
    """Scale s for fused depth_m (F, H, W) metres so that s * depth_m puts the plane at
    config.z_m; `valid` (F, H, W) bool marks the pixels to consider (static, depth > 0), K the
    exo intrinsics and c2w (F, 4, 4) its world poses. One scale for the whole clip."""
    step = config.sample_stride
    depth = torch.from_numpy(np.ascontiguousarray(depth_m[:, ::step, ::step])).double()
    usable = torch.from_numpy(np.ascontiguousarray(valid[:, ::step, ::step])) & (depth > 0)
    # Pixel (i, j) of the strided image is pixel (step i, step j) of the full one.
    strided_K = torch.from_numpy(K.K).double() / torch.tensor([[step], [step], [1.0]])
    cam = backproject(depth, strided_K)                                  # (F, h, w, 3)
    rotation_z = torch.from_numpy(np.asarray(c2w)[:, 2, :3]).double()    # world z row of R
    dz = torch.einsum("fhwc,fc->fhw", cam, rotation_z)                   # height above C
    below = torch.from_numpy(config.z_m - np.asarray(c2w)[:, 2, 3])[:, None, None]
    implied = torch.where(usable & (dz * below > 0), (below / dz).log(), torch.nan)
    limit = np.log1p(config.max_correction)
    log_s = implied[implied.abs() <= limit]
    total = int(usable.sum())
    if total == 0 or log_s.numel() == 0:
        return PlaneScale(1.0, False, 0.0)
    bins = max(1, int(np.ceil(2 * limit / config.bin_width)))
    counts = torch.histc(log_s, bins, -limit, limit)
    # The mode over three adjacent bins: a plane whose scale falls on a bin edge still counts
    # whole, and fusion's residual shape error spreads it over about a bin.
    padded = torch.nn.functional.pad(counts, (1, 1))
    window = padded[:-2] + padded[1:-1] + padded[2:]
    centre = -limit + (int(window.argmax()) + 0.5) * (2 * limit / bins)
    on_plane = log_s[(log_s - centre).abs() <= 1.5 * (2 * limit / bins)]
    fraction = on_plane.numel() / total
    if fraction < config.min_fraction:
        return PlaneScale(1.0, False, fraction)
    return PlaneScale(float(on_plane.median().exp()), True, fraction)
