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
    num_views, height, width = w2c.shape[0], K.height, K.width
    K_t = torch.as_tensor(K.K, dtype=w2c.dtype, device=w2c.device)
    # Homogeneous pixel coordinates of every point in every view, one GEMM: (V, 3, N).
    M = (K_t @ w2c[:, :3, :3]).reshape(3 * num_views, 3)
    uvz = torch.addmm((K_t @ w2c[:, :3, 3:]).reshape(3 * num_views, 1), M, cloud.xyz.T)
    uvz = uvz.view(num_views, 3, -1)
    z = uvz[:, 2]
    inv_z = z.reciprocal()
    u = uvz[:, 0] * inv_z
    v = uvz[:, 1] * inv_z
    inside = (z > 0) & (u >= -0.5) & (u < width - 0.5) & (v >= -0.5) & (v < height - 0.5)
    # Non-negative after the test above, so truncation is rounding to the nearest pixel.
    pixel = (v + 0.5).int() * width + (u + 0.5).int()
    offsets = torch.arange(0, num_views * height * width, height * width,
                           device=w2c.device, dtype=torch.int64)[:, None]
    dump = num_views * height * width                   # one extra slot for culled points
    linear = torch.where(inside, pixel + offsets, dump)
    index = torch.arange(len(cloud), device=w2c.device)
    key = (z.view(torch.int32).long() << 32) | index     # z > 0: float bits are ordered
    zbuf = torch.full((dump + 1,), _EMPTY, dtype=torch.int64, device=w2c.device)
    zbuf.scatter_reduce_(0, linear.view(-1), key.view(-1), "amin")
    return zbuf[:dump].view(num_views, height, width)


def _interior(zmin: torch.Tensor, v: torch.Tensor, i: torch.Tensor, j: torch.Tensor,
              tol: float) -> torch.Tensor:
    """For coarse pixels (v, i, j) of zmin (V, h, w): True where the surface continues on
    both opposite sides (above and below, or left and right), i.e. inside it, not on its
    edge."""
    padded = F.pad(zmin, (1, 1, 1, 1), value=torch.inf)
    center = zmin[v, i, j]
    margin = tol * center

    def same(di: int, dj: int) -> torch.Tensor:
        return (padded[v, i + 1 + di, j + 1 + dj] - center).abs() <= margin

    return (same(-1, 0) & same(1, 0)) | (same(0, -1) & same(0, 1))


def _fill_holes(rgb: torch.Tensor, depth: torch.Tensor, covered: torch.Tensor,
                config: RenderConfig) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Close pin-holes of (V, H, W[, 3]) buffers, fine to coarse (see the module docstring).

    At level l the z-buffer is min-pooled over k x k blocks (k = 2^l), which is exactly a
    rasterisation at 1/k resolution, where a sparse surface is dense again. In a block that
    is inside a surface (`_interior`), the pixels that are empty or lie behind the block's
    front surface take the mean colour and depth of the block's pixels on that surface.
    Silhouettes are not interior, so they do not grow. Only blocks that have such pixels
    are touched, so the cost follows the hole area, not the image area.
    """
    tol = config.depth_tolerance
    num_views, height, width = depth.shape
    step = 2**config.hole_fill_levels
    pad = (0, (-width) % step, 0, (-height) % step)
    z = F.pad(torch.where(covered, depth, torch.inf), pad, value=torch.inf)
    color = F.pad(rgb, (0, 0) + pad) if any(pad) else rgb.clone()
    # Min/max pyramids of the original z: block minima never change (a filled pixel takes a
    # value >= its block's minimum); block maxima only shrink, so they safely over-select.
    zmin, zmax = z, z
    for level in range(1, config.hole_fill_levels + 1):
        zmin = -F.max_pool2d(-zmin[:, None], 2)[:, 0]
        zmax = F.max_pool2d(zmax[:, None], 2)[:, 0]
        k = 2**level
        front = zmin * (1.0 + tol)
        v, i, j = ((zmax > front) & torch.isfinite(zmin)).nonzero().unbind(1)
        inside = _interior(zmin, v, i, j, tol)
        v, i, j = v[inside], i[inside], j[inside]
        if len(v) == 0:
            continue
        zb = z.view(num_views, zmin.shape[1], k, zmin.shape[2], k)
        cb = color.view(num_views, zmin.shape[1], k, zmin.shape[2], k, 3)
        z_blk, c_blk = zb[v, i, :, j, :], cb[v, i, :, j, :].float()       # (n, k, k[, 3])
        on_front = z_blk <= front[v, i, j][:, None, None]
        count = on_front.sum(dim=(1, 2)).clamp_min(1)
        mean_z = torch.where(on_front, z_blk, 0.0).sum(dim=(1, 2)) / count
        mean_c = (c_blk * on_front[..., None]).sum(dim=(1, 2)) / count[:, None]
        zb[v, i, :, j, :] = torch.where(on_front, z_blk, mean_z[:, None, None])
        cb[v, i, :, j, :] = torch.where(on_front[..., None], c_blk,
                                        mean_c[:, None, None, :]).add_(0.5).to(torch.uint8)
    z, color = z[:, :height, :width], color[:, :height, :width]
    mask = torch.isfinite(z)
    return color, torch.where(mask, z, 0.0), mask


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
