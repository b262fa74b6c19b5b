"""Z-buffer point rendering of a `PointCloud` at many camera poses (pure torch, batched).

Each point lands on its nearest pixel and the nearest point wins: one packed int64
scatter-min of (depth bits << 32 | point index). A point also has to cover the gap to its
neighbours on the surface (its splat): one whose neighbour spacing projects to s pixels is
drawn a second time into the z-buffer of pyramid level l = ceil(log2 s), where it fills
one 2^l x 2^l block. When the levels are composed, a coarse splat shows only where the
finer levels are empty or see through to a surface behind it, so splats close pin-holes
without blurring surfaces that are dense enough.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from egox_model.config import check_settings, setting
from egox_model.errors import InputError
from egox_model.geometry.camera import Intrinsics
from egox_model.geometry.pointcloud import PointCloud

__all__ = ["RenderConfig", "RenderResult", "render_points"]

_INF_BITS = 0x7F800000          # float32 +inf: above every finite depth's bit pattern


def _empty_key(num_points: int) -> int:
    """Key of a pixel no point reached: depth +inf, point index `num_points` (a sentinel)."""
    return (_INF_BITS << 32) | num_points


@dataclass(frozen=True)
class RenderConfig:
    """Point splatting at the ego poses."""

    max_splat_level: int = setting(3, "the largest splat is 2^level pixels square (0 = "
                                   "1-pixel points)", low=0, high=8)
    depth_tolerance: float = setting(0.05, "relative depth change per pixel of distance still "
                                     "counted as one surface; a splat covers a finer sample "
                                     "only when closer than that", low=0.0, low_open=True)
    views_per_batch: int = setting(7, "ego views rasterised together (memory vs speed)",
                                   low=1)

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass
class RenderResult:
    """rgb (V, H, W, 3) uint8 (black = uncovered), depth_m (V, H, W) float32 z-depth
    (0 = uncovered) and mask (V, H, W) bool coverage, on the render device."""

    rgb: torch.Tensor
    depth_m: torch.Tensor
    mask: torch.Tensor


def _chunk_corners(cloud: PointCloud, chunk: int = 256) -> tuple[torch.Tensor, ...]:
    """The cloud in whole chunks plus one all-padding chunk at the end: coordinate planes
    (3, C + 1, chunk; padding NaN), spacing (C + 1, chunk; None without spacing), and the 8
    bounding-box corners (C, 8, 3) of each real chunk. Lifted points come ordered by image
    tile, so consecutive points are neighbours and chunk boxes are tight."""
    xyz = cloud.xyz
    pad = (-len(xyz)) % chunk + chunk
    padded = torch.cat((xyz, xyz.new_full((pad, 3), torch.nan))).view(-1, chunk, 3)
    spacing = None if cloud.spacing_m is None else torch.cat(
        (cloud.spacing_m, cloud.spacing_m.new_zeros(pad))).view(-1, chunk)
    low = padded[:-1].nan_to_num(torch.inf).amin(dim=1)
    high = padded[:-1].nan_to_num(-torch.inf).amax(dim=1)
    pick = torch.tensor([[(c >> a) & 1 for a in range(3)] for c in range(8)],
                        dtype=torch.bool, device=xyz.device)
    corners = torch.where(pick, high[:, None], low[:, None])          # (C, 8, 3)
    return padded.permute(2, 0, 1).contiguous(), spacing, corners


def _level_shapes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """(rows, cols) of each pyramid level; level 0 padded to a multiple of 2^levels."""
    step = 2**levels
    rows, cols = -(-height // step) * step, -(-width // step) * step
    return [(rows >> level, cols >> level) for level in range(levels + 1)]


def _rasterize(cloud: PointCloud, chunks: tuple[torch.Tensor, ...], K: Intrinsics,
               w2c: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """Packed z-buffers, one (V, rows_l, cols_l) int64 per level l (`_empty_key` = none).

    Per view, chunks whose bounding box lies entirely outside the view frustum are culled
    before any per-point work (an ego camera typically sees a third of the exo points); the
    views' remaining chunks are then processed together, in one pass of batched ops.
    """
    num_views, height, width = w2c.shape[0], K.height, K.width
    shapes = _level_shapes(height, width, levels if cloud.spacing_m is not None else 0)
    sizes = [rows * cols for rows, cols in shapes]
    starts = torch.tensor(np.cumsum([0] + sizes[:-1]), device=w2c.device)
    level_cols = torch.tensor([cols for _, cols in shapes], device=w2c.device)
    K_t = torch.as_tensor(K.K, dtype=w2c.dtype, device=w2c.device)
    P = K_t @ w2c[:, :3, :]                                               # (V, 3, 4)
    points, spacing, corners = chunks
    chunk = points.shape[2]
    # Homogeneous pixel coordinates of every box corner in every view: (V, C, 8, 3).
    c = torch.einsum("vij,ckj->vcki", P[:, :, :3], corners) + P[:, None, None, :, 3]
    x, y, z = c.unbind(-1)
    culled = ((z <= 0).all(-1) | (x < -0.5 * z).all(-1) | (x >= (width - 0.5) * z).all(-1)
              | (y < -0.5 * z).all(-1) | (y >= (height - 0.5) * z).all(-1))
    zbuf = torch.full((num_views, sum(sizes) + 1), _empty_key(len(cloud)), dtype=torch.int64,
                      device=w2c.device)                       # + 1: a dump slot per view
    # The visible chunks of every view side by side, padded with the all-NaN last chunk.
    visible = ~culled
    counts = visible.sum(1)
    slots = int(counts.max())
    if slots == 0:
        return [part.view(num_views, *shape) for part, shape in
                zip(zbuf[:, :-1].split(sizes, dim=1), shapes)]
    first = torch.argsort((~visible).byte(), dim=1, stable=True)[:, :slots]
    ids = torch.where(torch.arange(slots, device=w2c.device) < counts[:, None], first,
                      points.shape[1] - 1)                                 # (V, slots)
    xyz = points[:, ids].view(3, num_views, -1).transpose(0, 1)             # (V, 3, M)
    uvz = torch.baddbmm(P[:, :, 3:], P[:, :, :3], xyz)                     # (V, 3, M)
    x, y, z = uvz.unbind(1)                                                 # (V, M) each
    inv_z = z.reciprocal()
    u, v = x * inv_z, y * inv_z
    inside = ((z > 0) & (u >= -0.5) & (u < width - 0.5) & (v >= -0.5)
              & (v < height - 0.5))                                         # NaN: False
    # Truncation rounds to the nearest pixel where inside; the rest goes to the dump slot.
    col, row = (u + 0.5).int(), (v + 0.5).int()
    dump = zbuf.shape[1] - 1
    offsets = torch.arange(num_views, device=w2c.device)[:, None] * zbuf.shape[1]
    lane = torch.arange(chunk, device=w2c.device)
    index = (ids[:, :, None] * chunk + lane).view(num_views, -1)
    key = ((z.view(torch.int32).long() << 32) | index).view(-1)              # z > 0: ordered
    flat = zbuf.view(-1)
    pixel = torch.where(inside, row * shapes[0][1] + col, dump)
    flat.scatter_reduce_(0, (pixel + offsets).view(-1), key, "amin")
    if len(shapes) > 1:
        # Splats are drawn for the points whose footprint exceeds a pixel, about a third.
        footprint_px = spacing[ids].view(num_views, -1) * (K.fx * inv_z)
        splat = (inside & (footprint_px > 1.0)).view(-1).nonzero()[:, 0]
        level = torch.ceil(torch.log2(footprint_px.view(-1)[splat])).long()
        level = level.clamp_max(len(shapes) - 1)
        coarse = ((splat // pixel.shape[1]) * zbuf.shape[1] + starts[level]
                  + (row.view(-1)[splat] >> level) * level_cols[level]
                  + (col.view(-1)[splat] >> level))
        flat.scatter_reduce_(0, coarse, key[splat], "amin")
    return [part.view(num_views, *shape) for part, shape in
            zip(zbuf[:, :-1].split(sizes, dim=1), shapes)]


def _compose(levels: list[torch.Tensor], tolerance: float) -> torch.Tensor:
    """Level-0 z-buffer where each coarse splat covers the pixels of its block that are
    empty or lie behind it by more than tolerance x block size.

    Positive float32 bit patterns sort like the floats, so "behind" is one integer compare
    of the fine keys against the coarse threshold's key (empty coarse blocks: +inf, never).
    """
    fine = levels[0]
    num_views, rows, cols = fine.shape
    for level in range(1, len(levels)):
        k = 2**level
        coarse = levels[level]
        limit = (coarse >> 32).int().view(torch.float32) * (1.0 + tolerance * k)
        limit_key = (limit.view(torch.int32).long() << 32) | 0xFFFFFFFF
        fine = torch.where(fine > _upsample(limit_key, k), _upsample(coarse, k), fine)
    return fine


def _upsample(grid: torch.Tensor, k: int) -> torch.Tensor:
    """Nearest-neighbour k-times upsampling of (V, h, w) to a contiguous (V, h*k, w*k)
    (faster for the following elementwise op than broadcasting through a 5-d view)."""
    num_views, h, w = grid.shape
    blocks = grid[:, :, None, :, None].expand(num_views, h, k, w, k)
    return blocks.reshape(num_views, h * k, w * k)


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
    # Colours packed as one int32 per point (and a black sentinel): a 1-d gather per pixel.
    rgb32 = torch.cat((cloud.rgb, cloud.rgb.new_zeros(len(cloud), 1)), 1).view(torch.int32)
    palette = torch.cat((rgb32[:, 0], rgb32.new_zeros(1)))
    chunks = _chunk_corners(cloud)
    shape = (w2c.shape[0], K.height, K.width)
    out = RenderResult(torch.empty(*shape, 3, dtype=torch.uint8, device=device),
                       torch.empty(shape, device=device),
                       torch.empty(shape, dtype=torch.bool, device=device))
    for start in range(0, w2c.shape[0], config.views_per_batch):
        stop = min(start + config.views_per_batch, w2c.shape[0])
        levels = _rasterize(cloud, chunks, K, w2c[start:stop], config.max_splat_level)
        zbuf = _compose(levels, config.depth_tolerance)[:, :K.height, :K.width]
        depth = (zbuf >> 32).int().view(torch.float32)
        torch.lt(depth, torch.inf, out=out.mask[start:stop])
        out.depth_m[start:stop] = depth.nan_to_num(posinf=0.0)           # inf: uncovered
        rgba = palette[zbuf & 0xFFFFFFFF].view(torch.uint8).view(*zbuf.shape, 4)
        out.rgb[start:stop] = rgba[..., :3]
    return out
