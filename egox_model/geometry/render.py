"""Z-buffer point rendering of a `PointCloud` at many camera poses (pure torch, batched).

Each point lands on its nearest pixel; the nearest point wins (one packed int64 scatter-min
of (depth bits << 32 | point index)). Pin-holes, where a closer surface spreads over more
pixels than it has points, are closed in screen space (`_fill_holes`), which plays the role
of a splat size without dilating silhouettes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from egox_model.errors import InputError
from egox_model.geometry.camera import Intrinsics
from egox_model.geometry.pointcloud import PointCloud

__all__ = ["RenderConfig", "RenderResult", "render_points"]

_EMPTY = torch.iinfo(torch.int64).max


@dataclass(frozen=True)
class RenderConfig:
    """hole_fill_levels: pyramid levels of hole filling; closes gaps up to about 2^levels
    pixels wide, the role a splat size plays elsewhere (0 = raw 1-pixel points).
    depth_tolerance: relative depth margin of the "closer surface" test.
    views_per_batch: views rasterised together (memory: ~12 bytes x points x views)."""

    hole_fill_levels: int = 3
    depth_tolerance: float = 0.05
    near_m: float = 0.05
    views_per_batch: int = 7

    def __post_init__(self) -> None:
        if self.hole_fill_levels < 0 or self.views_per_batch < 1:
            raise InputError("hole_fill_levels must be >= 0 and views_per_batch >= 1")
        if self.depth_tolerance <= 0 or self.near_m <= 0:
            raise InputError("depth_tolerance and near_m must be positive")


@dataclass
class RenderResult:
    """rgb (V, H, W, 3) uint8 (black = uncovered), depth_m (V, H, W) float32 z-depth
    (0 = uncovered) and mask (V, H, W) bool coverage, on the render device."""

    rgb: torch.Tensor
    depth_m: torch.Tensor
    mask: torch.Tensor


def _rasterize(cloud: PointCloud, K: Intrinsics, w2c: torch.Tensor) -> torch.Tensor:
    """Packed z-buffer (V, H, W) int64 of the nearest point per pixel; _EMPTY = none."""
    num_views = w2c.shape[0]
    height, width = K.height, K.width
    cam = torch.baddbmm(w2c[:, None, :3, 3], cloud.xyz.expand(num_views, -1, -1),
                        w2c[:, :3, :3].transpose(1, 2))                 # (V, N, 3)
    x, y, z = cam.unbind(-1)
    inv_z = z.reciprocal()
    u = torch.floor(x * inv_z * K.fx + (K.cx + 0.5))
    v = torch.floor(y * inv_z * K.fy + (K.cy + 0.5))
    inside = (z > 0) & (u >= 0) & (u < width) & (v >= 0) & (v < height)
    view = torch.arange(num_views, device=w2c.device)[:, None]
    linear = (view * height + v.long()) * width + u.long()
    index = torch.arange(len(cloud), device=w2c.device).expand(num_views, -1)
    key = (z.contiguous().view(torch.int32).long() << 32) | index       # z > 0: bits ordered
    zbuf = torch.full((num_views * height * width,), _EMPTY, dtype=torch.int64,
                      device=w2c.device)
    zbuf.scatter_reduce_(0, linear[inside], key[inside], "amin")
    return zbuf.view(num_views, height, width)


def _interior(zc: torch.Tensor, tol: float) -> torch.Tensor:
    """True where a coarse pixel of zc (V, 1, h, w) continues the same surface on both
    opposite sides (above and below, or left and right): inside a surface, not on its edge."""
    padded = F.pad(zc, (1, 1, 1, 1), value=torch.inf)
    h, w = zc.shape[-2:]

    def same(dy: int, dx: int) -> torch.Tensor:
        neighbour = padded[..., 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]
        return (neighbour - zc).abs() <= tol * zc

    return (same(-1, 0) & same(1, 0)) | (same(0, -1) & same(0, 1))


def _fill_holes(rgb: torch.Tensor, depth: torch.Tensor, covered: torch.Tensor,
                config: RenderConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Close pin-holes of (V, H, W[, 3]) buffers, coarse to fine (see the module docstring).

    At level l the z-buffer is min-pooled over 2^l x 2^l blocks, which is exactly a
    rasterisation at 1/2^l resolution, where a sparse surface is dense again. A fine pixel
    that is empty or lies behind its block's front surface, where that block is inside a
    surface (`_interior`), takes the block's front surface: the mean colour and depth of the
    block's pixels on that surface. Silhouettes are not interior, so they do not grow.
    """
    tol = config.depth_tolerance
    height, width = depth.shape[-2:]
    z = torch.where(covered, depth, torch.inf)[:, None]
    color = rgb.permute(0, 3, 1, 2).float()
    for level in range(config.hole_fill_levels, 0, -1):
        k = 2**level
        pad = (0, (-width) % k, 0, (-height) % k)
        zp = F.pad(z, pad, value=torch.inf)
        zc = -F.max_pool2d(-zp, k)
        zc_up = zc.repeat_interleave(k, 2).repeat_interleave(k, 3)[..., :height, :width]
        on_front = (z <= zc_up * (1.0 + tol)).float()
        sums = F.avg_pool2d(F.pad(torch.cat((color * on_front, torch.nan_to_num(
            z * on_front, posinf=0.0), on_front), 1), pad), k)
        mean = sums[:, :4] / sums[:, 4:5].clamp_min(1e-12)
        fill = torch.isfinite(zc) & _interior(zc, tol)
        up = (lambda t: t.repeat_interleave(k, 2).repeat_interleave(k, 3)[..., :height, :width])
        replace = up(fill) & (z > zc_up * (1.0 + tol))
        mean_up = up(mean)
        color = torch.where(replace, mean_up[:, :3], color)
        z = torch.where(replace, mean_up[:, 3:4], z)
    mask = torch.isfinite(z)[:, 0]
    rgb_out = color.round().clamp(0, 255).to(torch.uint8).permute(0, 2, 3, 1)
    return rgb_out, torch.where(mask, z[:, 0], 0.0), mask


def render_points(cloud: PointCloud, K: Intrinsics, c2w: np.ndarray | torch.Tensor,
                  config: RenderConfig = RenderConfig(), device=None) -> RenderResult:
    """Render `cloud` with camera K at each pose c2w (V, 4, 4); see `RenderResult`."""
    device = torch.device(device) if device is not None else cloud.xyz.device
    c2w = torch.as_tensor(np.asarray(c2w) if not torch.is_tensor(c2w) else c2w,
                          dtype=torch.float64)
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
        raise InputError(f"c2w must be (V, 4, 4), got {tuple(c2w.shape)}")
    if len(cloud) >= 2**31:
        raise InputError(f"point cloud too large ({len(cloud)} points): use a frame_stride")
    w2c = torch.linalg.inv(c2w).to(device=device, dtype=torch.float32)
    cloud = cloud.to(device)
    results = []
    for start in range(0, w2c.shape[0], config.views_per_batch):
        zbuf = _rasterize(cloud, K, w2c[start:start + config.views_per_batch])
        covered = zbuf != _EMPTY
        index = torch.where(covered, zbuf & 0xFFFFFFFF, 0)
        depth = torch.where(covered, (zbuf >> 32).int().view(torch.float32), 0.0)
        rgb = cloud.rgb[index] if len(cloud) else torch.zeros(
            index.shape + (3,), dtype=torch.uint8, device=device)
        rgb = torch.where(covered[..., None], rgb, 0)
        if config.hole_fill_levels > 0:
            rgb, depth, covered = _fill_holes(rgb, depth, covered, config)
        results.append((rgb, depth, covered))
    rgb, depth, mask = (torch.cat(parts) for parts in zip(*results))
    return RenderResult(rgb, depth, mask)
