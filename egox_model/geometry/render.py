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

from egox_model.errors import InputError
from egox_model.geometry.camera import Intrinsics
from egox_model.geometry.pointcloud import PointCloud

__all__ = ["RenderConfig", "RenderResult", "render_points"]

_EMPTY = torch.iinfo(torch.int64).max


@dataclass(frozen=True)
class RenderConfig:
    """max_splat_level: the largest splat is 2^level pixels square (0 = 1-pixel points).
    depth_tolerance: relative depth change per pixel of distance still counted as the same
        surface (a bound on surface slope); a splat covers a finer sample only when it is
        closer than that.
    views_per_batch: views rasterised together."""

    max_splat_level: int = 3
    depth_tolerance: float = 0.05
    views_per_batch: int = 7

    def __post_init__(self) -> None:
        if not 0 <= self.max_splat_level <= 8 or self.views_per_batch < 1:
            raise InputError(f"max_splat_level must be in [0, 8] (got {self.max_splat_level})"
                             f" and views_per_batch >= 1 (got {self.views_per_batch})")
        if self.depth_tolerance <= 0:
            raise InputError(f"depth_tolerance must be positive, got {self.depth_tolerance}")


@dataclass
class RenderResult:
    """rgb (V, H, W, 3) uint8 (black = uncovered), depth_m (V, H, W) float32 z-depth
    (0 = uncovered) and mask (V, H, W) bool coverage, on the render device."""

    rgb: torch.Tensor
    depth_m: torch.Tensor
    mask: torch.Tensor


def _chunk_corners(xyz: torch.Tensor, chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Points padded to whole chunks (C, chunk, 3; padding NaN) and the 8 bounding-box
    corners (C, 8, 3) of each chunk. Lifted points come ordered by image tile, so
    consecutive points are neighbours and chunk boxes are tight."""
    pad = (-len(xyz)) % chunk
    padded = torch.cat((xyz, xyz.new_full((pad, 3), torch.nan))).view(-1, chunk, 3)
    low = padded.nan_to_num(torch.inf).amin(dim=1)
    high = padded.nan_to_num(-torch.inf).amax(dim=1)
    pick = torch.tensor([[(c >> a) & 1 for a in range(3)] for c in range(8)],
                        dtype=torch.bool, device=xyz.device)
    corners = torch.where(pick, high[:, None], low[:, None])          # (C, 8, 3)
    return padded, corners


def _level_shapes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """(rows, cols) of each pyramid level; level 0 padded to a multiple of 2^levels."""
    step = 2**levels
    rows, cols = -(-height // step) * step, -(-width // step) * step
    return [(rows >> level, cols >> level) for level in range(levels + 1)]


def _rasterize(cloud: PointCloud, K: Intrinsics, w2c: torch.Tensor, levels: int,
               chunk: int = 256) -> list[torch.Tensor]:
    """Packed z-buffers, one (V, rows_l, cols_l) int64 per level l (_EMPTY = no point).

    Per view, chunks whose bounding box lies entirely outside the view frustum are culled
    before any per-point work (an ego camera typically sees a third of the exo points).
    """
    num_views, height, width = w2c.shape[0], K.height, K.width
    shapes = _level_shapes(height, width, levels if cloud.spacing_m is not None else 0)
    sizes = [rows * cols for rows, cols in shapes]
    starts = torch.tensor(np.cumsum([0] + sizes[:-1]), device=w2c.device)
    level_cols = torch.tensor([cols for _, cols in shapes], device=w2c.device)
    K_t = torch.as_tensor(K.K, dtype=w2c.dtype, device=w2c.device)
    P = K_t @ w2c[:, :3, :]                                               # (V, 3, 4)
    points, corners = _chunk_corners(cloud.xyz, chunk)
    # Homogeneous pixel coordinates of every box corner in every view: (V, C, 8, 3).
    c = torch.einsum("vij,ckj->vcki", P[:, :, :3], corners) + P[:, None, None, :, 3]
    x, y, z = c.unbind(-1)
    culled = ((z <= 0).all(-1) | (x < -0.5 * z).all(-1) | (x >= (width - 0.5) * z).all(-1)
              | (y < -0.5 * z).all(-1) | (y >= (height - 0.5) * z).all(-1))
    zbuf = torch.full((num_views, sum(sizes)), _EMPTY, dtype=torch.int64, device=w2c.device)
    for view in range(num_views):
        visible = (~culled[view]).nonzero()[:, 0]
        if len(visible) == 0:
            continue
        uvz = torch.addmm(P[view, :, 3], points[visible].view(-1, 3), P[view, :, :3].T)
        zv = uvz[:, 2]
        u = uvz[:, 0] / zv
        v = uvz[:, 1] / zv
        inside = ((zv > 0) & (u >= -0.5) & (u < width - 0.5) & (v >= -0.5)
                  & (v < height - 0.5)).nonzero()[:, 0]
        zv, u, v = zv[inside], u[inside], v[inside]
        # Non-negative after the test above, so truncation rounds to the nearest pixel.
        col, row = (u + 0.5).long(), (v + 0.5).long()
        index = visible[inside // chunk] * chunk + inside % chunk
        key = (zv.view(torch.int32).long() << 32) | index             # z > 0: bits ordered
        linear = row * shapes[0][1] + col
        if len(shapes) > 1:
            footprint_px = cloud.spacing_m[index] * (K.fx / zv)
            level = torch.ceil(torch.log2(footprint_px.clamp_min(1.0))).long()
            level = level.clamp_max(len(shapes) - 1)
            splat = (level > 0).nonzero()[:, 0]
            lv = level[splat]
            coarse = starts[lv] + (row[splat] >> lv) * level_cols[lv] + (col[splat] >> lv)
            linear, key = torch.cat((linear, coarse)), torch.cat((key, key[splat]))
        zbuf[view].scatter_reduce_(0, linear, key, "amin")
    return [part.view(num_views, *shape) for part, shape in
            zip(zbuf.split(sizes, dim=1), shapes)]


def _key_depth(key: torch.Tensor) -> torch.Tensor:
    """Depth (float32 metres, inf where empty) of packed z-buffer keys."""
    return torch.where(key == _EMPTY, torch.inf, (key >> 32).int().view(torch.float32))


def _compose(levels: list[torch.Tensor], tolerance: float) -> torch.Tensor:
    """Level-0 z-buffer where each coarse splat covers the pixels of its block that are
    empty or lie behind it by more than tolerance x block size."""
    fine = levels[0]
    num_views, rows, cols = fine.shape
    for level in range(1, len(levels)):
        k = 2**level
        coarse = levels[level][:, :, None, :, None]                     # (V, h, 1, w, 1)
        blocks = fine.view(num_views, rows // k, k, cols // k, k)
        behind = _key_depth(blocks) > _key_depth(coarse) * (1.0 + tolerance * k)
        fine = torch.where(behind, coarse, blocks).view(num_views, rows, cols)
    return fine


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
        levels = _rasterize(cloud, K, w2c[start:start + config.views_per_batch],
                            config.max_splat_level)
        zbuf = _compose(levels, config.depth_tolerance)[:, :K.height, :K.width]
        covered = zbuf != _EMPTY
        index = torch.where(covered, zbuf & 0xFFFFFFFF, 0)
        depth = torch.where(covered, (zbuf >> 32).int().view(torch.float32), 0.0)
        rgb = cloud.rgb[index] if len(cloud) else torch.zeros(
            index.shape + (3,), dtype=torch.uint8, device=device)
        results.append((torch.where(covered[..., None], rgb, 0), depth, covered))
    rgb, depth, mask = (torch.cat(parts) for parts in zip(*results))
    return RenderResult(rgb, depth, mask)
