"""Metric scale of fused exo depth from a horizontal plane at a known world height.

Fusion takes its metric scale from D_m, a monocular estimate whose scale is off by a few %,
and that error moves the whole prior: 0.5 % at 1.6 m is 8 mm, several ego pixels of a
fine texture seen from closer (docs/prior.md). Where the exo camera sees a horizontal plane
at a known height (a table top, the floor; world frame REP 103, z up), the plane fixes the
scale: scaling depth about the camera centre C keeps planes planar and horizontal, so every
pixel i of the plane implies the same correction s_i = (z_plane - C_z) / dz_i, where dz_i is
its fused point's world height above C. The plane is the largest group of a frame's lifted
pixels sharing one implied correction (a histogram mode of log s_i within the accepted
range); other horizontal surfaces imply other corrections, slanted ones spread over many.

Each plane pixel then knows its true depth, t = (z_plane - C_z) / r_z (r_z: the world height
of its camera ray per metre of z-depth), so the correction is fitted per frame in the
fusion's own error model, 1 / t = a / D + b over the plane pixels: it removes the fused
depth's per-frame scale and shift errors, including the relative-depth drift that the
fusion's temporal smoothing averages over. A frame without the plane takes the nearest
frame's correction.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from egox_model.config import check_settings, setting
from egox_model.geometry.camera import Intrinsics
from egox_model.geometry.depth_fusion import smooth_over_clip
from egox_model.geometry.projection import backproject

__all__ = ["MIN_AFFINE_SPREAD", "PlaneCorrection", "PlaneScaleConfig", "plane_correction"]


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
    min_fraction: float = setting(0.05, "fewest lifted pixels (fraction) of a frame on the "
                                  "plane for its correction to be used", low=0.0, high=1.0,
                                  low_open=True)
    sample_stride: int = setting(4, "use every n-th row and column", low=1)

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True)
class PlaneCorrection:
    """Per frame, 1 / D' = a / D + b maps fused depth D (metres) onto the plane: a, b (F,);
    found (F,) bool: the frame's own plane qualified (others copy the nearest that did;
    a = 1, b = 0 everywhere when none did); plane_fraction (F,): fraction of the frame's
    pixels on the plane; scale: median D' / D over every pixel considered."""

    a: np.ndarray
    b: np.ndarray
    found: np.ndarray
    plane_fraction: np.ndarray
    scale: float = 1.0

    def apply(self, depth_m: np.ndarray) -> np.ndarray:
        """Corrected depth (F, H, W) float32; 0 (invalid) stays 0."""
        depth = torch.from_numpy(np.asarray(depth_m, dtype=np.float32))
        a, b = (torch.from_numpy(v).float()[:, None, None] for v in (self.a, self.b))
        return torch.where(depth > 0, depth / torch.addcmul(a, b, depth), 0.0).numpy()

    def diagnostics(self) -> dict:
        """JSON-ready summary."""
        return {"a": self.a.tolist(), "b": self.b.tolist(),
                "found_frames": int(self.found.sum()),
                "plane_fraction": float(self.plane_fraction.mean()), "scale": self.scale}


#: The plane's inverse depths must span this ratio (90th / 10th percentile) to fit the shift
#: b as well as the scale; a plane seen over a narrower range of depths fixes the scale only.
MIN_AFFINE_SPREAD = 1.25


def _frame_fit(depth: torch.Tensor, dz: torch.Tensor, below: float,
               usable: torch.Tensor, config: PlaneScaleConfig) -> tuple[float, float, float]:
    """(a, b, plane fraction) of one frame's strided depth (h, w), heights above the camera
    dz (h, w) and plane offset `below` = z_m - C_z; NaN a, b when no plane qualifies."""
    nan = float("nan")
    implied = torch.where(usable & (dz * below > 0), (below / dz).log(), torch.nan)
    limit = np.log1p(config.max_correction)
    candidate = implied.abs() <= limit
    total = int(usable.sum())
    if total == 0 or not candidate.any():
        return nan, nan, 0.0
    bins = max(1, int(np.ceil(2 * limit / config.bin_width)))
    counts = torch.histc(implied[candidate], bins, -limit, limit)
    # The mode over three adjacent bins: a plane whose scale falls on a bin edge still counts
    # whole, and the fused depth's shift error spreads it over about a bin.
    padded = torch.nn.functional.pad(counts, (1, 1))
    window = padded[:-2] + padded[1:-1] + padded[2:]
    centre = -limit + (int(window.argmax()) + 0.5) * (2 * limit / bins)
    on_plane = candidate & ((implied - centre).abs() <= 1.5 * (2 * limit / bins))
    fraction = int(on_plane.sum()) / total
    if fraction < config.min_fraction:
        return nan, nan, fraction
    inv_fused = 1.0 / depth[on_plane]
    inv_true = (dz / depth)[on_plane] / below
    low, high = torch.quantile(inv_fused, torch.tensor([0.1, 0.9], dtype=inv_fused.dtype))
    if high / low >= MIN_AFFINE_SPREAD:
        design = torch.stack((inv_fused, torch.ones_like(inv_fused)), 1)
        a, b = torch.linalg.lstsq(design, inv_true[:, None]).solution[:, 0].tolist()
        return a, b, fraction
    return float((inv_true / inv_fused).median()), 0.0, fraction


def plane_correction(depth_m: np.ndarray, valid: np.ndarray, K: Intrinsics, c2w: np.ndarray,
                     config: PlaneScaleConfig) -> PlaneCorrection:
    """The per-frame correction of fused depth_m (F, H, W) metres that puts the plane at
    config.z_m; `valid` (F, H, W) bool marks the pixels to consider (static, depth > 0), K
    the exo intrinsics and c2w (F, 4, 4) its world poses (see the module docstring)."""
    step = config.sample_stride
    c2w = torch.from_numpy(np.asarray(c2w, dtype=np.float64))
    depth = torch.from_numpy(np.ascontiguousarray(depth_m[:, ::step, ::step])).double()
    usable = torch.from_numpy(np.ascontiguousarray(valid[:, ::step, ::step])) & (depth > 0)
    # Pixel (i, j) of the strided image is pixel (step i, step j) of the full one.
    strided_K = torch.from_numpy(K.K).double() / torch.tensor([[step], [step], [1.0]])
    dz = torch.einsum("fhwc,fc->fhw", backproject(depth, strided_K), c2w[:, 2, :3])
    below = config.z_m - c2w[:, 2, 3]
    fits = np.array([_frame_fit(depth[f], dz[f], float(below[f]), usable[f], config)
                     for f in range(len(depth))])
    found = np.isfinite(fits[:, 0])
    if found.any():
        a, b = smooth_over_clip(fits[:, :2], 0.0).T           # failed frames: the nearest
    else:
        a, b = np.ones(len(fits)), np.zeros(len(fits))
    considered = depth[usable]
    frame = torch.nonzero(usable)[:, 0]
    a_t, b_t = torch.from_numpy(a)[frame], torch.from_numpy(b)[frame]
    scale = float((1.0 / (a_t + b_t * considered)).median()) if considered.numel() else 1.0
    return PlaneCorrection(a, b, found, fits[:, 2], scale)
