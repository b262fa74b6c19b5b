"""Lift the static pixels of a clip's exo frames into one coloured world point cloud, and
connect neighbouring pixels of one surface into a triangle mesh.

The exo pixel grid gives every point its 4-neighbours; each 2x2 pixel block is two triangles
unless a depth discontinuity runs through it. Two neighbouring pixels belong to one surface
when their inverse-depth step matches the slope of the surface on either side (a plane is
linear in inverse depth along an image row, however grazing), within `edge_tolerance`.
Flying pixels (one pixel half-way across a depth step, as depth sensors and estimators
produce) are dropped before lifting. See docs/prior.md.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from egox_model.config import check_settings, setting
from egox_model.errors import ConfigError, InputError
from egox_model.geometry.camera import Intrinsics
from egox_model.geometry.projection import backproject, transform_points

__all__ = ["LiftConfig", "PointCloud", "TILE_PX", "flying_pixels", "lift_points",
           "surface_edges"]

#: Points are ordered by exo image tiles of this size (pixels).
TILE_PX = 16


@dataclass
class PointCloud:
    """World points xyz (N, 3) float32 metres with colours rgb (N, 3) uint8.

    spacing_m (N,) float32, optional: distance to the next point on the same surface (the
    renderer sizes each point's splat from it; 0 = a single pixel). faces (T, 3) int64,
    optional: triangles of point indices; the renderer rasterises them and draws the points
    no triangle uses as single pixels. `lift_points` fills one of the two (faces unless
    `LiftConfig.mesh` is off) and orders points and triangles by exo image tile, so
    consecutive ones are neighbours.
    """

    xyz: torch.Tensor
    rgb: torch.Tensor
    spacing_m: torch.Tensor | None = None
    faces: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.xyz.shape[0]

    def to(self, device) -> PointCloud:
        """Copy onto `device`."""
        spacing = None if self.spacing_m is None else self.spacing_m.to(device)
        faces = None if self.faces is None else self.faces.to(device)
        return PointCloud(self.xyz.to(device), self.rgb.to(device), spacing, faces)


@dataclass(frozen=True)
class LiftConfig:
    """Which exo pixels become points."""

    frame_stride: int = setting(4, "lift frames 0, s, 2s, ... (4: one per latent frame of "
                                "Wan's VAE)", low=1)
    merge_static_camera: bool = setting(True, "a static exo camera lifts one background: the "
                                        "per-pixel mean of the static depth and colour over "
                                        "the lifted frames (official release), not one copy "
                                        "per frame")
    static_camera_tol_m: float = setting(1e-3, "largest exo camera motion (metres) still "
                                         "counted as static", low=0.0)
    min_depth_m: float = setting(0.05, "nearer points (metres) are dropped", low=0.0)
    max_depth_m: float = setting(100.0, "farther points (metres) are dropped", low=0.0,
                                 low_open=True)
    mesh: bool = setting(True, "connect neighbouring pixels of one surface into triangles "
                         "(rendered as a surface: no see-through, no holes when magnified); "
                         "false: points with square splats only")
    edge_tolerance: float = setting(0.02, "relative inverse-depth step between neighbouring "
                                    "pixels, beyond what the surface's slope predicts, that "
                                    "separates two surfaces (also the flying-pixel test)",
                                    low=0.0, low_open=True)
    max_surface_slope: float = setting(0.25, "steeper relative depth change per pixel is never "
                                       "one surface (a plane seen within ~0.5 deg of grazing, "
                                       "or a blurred depth edge)", low=0.0, low_open=True)

    def __post_init__(self) -> None:
        check_settings(self)
        if not self.min_depth_m < self.max_depth_m:
            raise ConfigError(f"min_depth_m={self.min_depth_m} must be below "
                              f"max_depth_m={self.max_depth_m}")


def _is_static(c2w: np.ndarray, tol_m: float) -> bool:
    """True when every pose equals the first one within `tol_m` (rotation scaled as metres)."""
    return bool(np.abs(c2w - c2w[:1]).max() <= tol_m)


def lift_points(rgb: np.ndarray, depth_m: np.ndarray, K: Intrinsics, c2w: np.ndarray,
                static_mask: np.ndarray | None = None,
                config: LiftConfig = LiftConfig()) -> PointCloud:
    """Point cloud of the valid static pixels of frames rgb (F, H, W, 3) / depth_m (F, H, W).

    K is the (undistorted) exo camera, c2w (F, 4, 4) its poses; static_mask True = static.
    """
    num_frames, height, width = depth_m.shape
    if rgb.shape != (num_frames, height, width, 3):
        raise InputError(f"rgb shape {rgb.shape} does not match depth shape {depth_m.shape}")
    if (K.width, K.height) != (width, height):
        raise InputError(f"K is for {K.width}x{K.height} but depth is {width}x{height}")
    frames = np.arange(0, num_frames, config.frame_stride)
    depth = torch.from_numpy(np.ascontiguousarray(depth_m[frames], dtype=np.float32))
    colors = torch.from_numpy(np.ascontiguousarray(rgb[frames]))
    valid = (depth >= config.min_depth_m) & (depth <= config.max_depth_m)   # NaN -> False
    if static_mask is not None:
        valid &= torch.from_numpy(np.ascontiguousarray(static_mask[frames], dtype=bool))
    poses = np.asarray(c2w, dtype=np.float64)[frames]

    if config.merge_static_camera and _is_static(poses, config.static_camera_tol_m):
        weight = valid.float()
        count = weight.sum(0)
        depth = ((torch.where(valid, depth, 0.0)).sum(0) / count.clamp_min(1.0))[None]
        colors = ((colors.float() * weight[..., None]).sum(0)
                  / count.clamp_min(1.0)[..., None]).round().to(torch.uint8)[None]
        valid, poses = (count > 0)[None], poses[:1]
    valid &= ~flying_pixels(depth, valid, config.edge_tolerance)

    K_t = torch.from_numpy(K.K).float().expand(len(poses), 3, 3)
    points = backproject(torch.where(valid, depth, 0.0), K_t)            # (f, H, W, 3)
    points = transform_points(torch.from_numpy(poses).float(), points.flatten(1, 2))
    keep = valid.flatten(1)
    tiles = _tile_order(len(poses), height, width)
    order = torch.argsort(tiles[keep], stable=True)
    spacing = faces = None
    if config.mesh:
        # Grid index -> point index of the kept, tile-ordered points.
        point_of = torch.full((keep.numel(),), -1, dtype=torch.int64)
        point_of[keep.flatten().nonzero()[:, 0][order]] = torch.arange(len(order))
        corner, faces = _grid_faces(depth, valid, config)
        faces = point_of[faces][torch.argsort(tiles.flatten()[corner], stable=True)]
    else:
        spacing = _neighbour_spacing(points.view(len(poses), height, width, 3), valid)
        spacing = spacing.flatten(1)[keep][order].contiguous()
    return PointCloud(points[keep][order].contiguous(),
                      colors.flatten(1, 2)[keep][order].contiguous(), spacing, faces)


def _minmod(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The smaller-magnitude of a and b where they agree in sign, else 0."""
    return torch.where(a * b > 0, torch.where(a.abs() < b.abs(), a, b), 0.0)


def _steps(inv: torch.Tensor, valid: torch.Tensor, dim: int) -> tuple[torch.Tensor, ...]:
    """Forward steps of inverse depth along `dim` (size - 1 there; NaN across an invalid
    pixel) and each pixel's surface slope: the minmod of its backward and forward steps, the
    one step it has next to an invalid pixel, 0 with none."""
    n = inv.shape[dim]
    step = inv.narrow(dim, 1, n - 1) - inv.narrow(dim, 0, n - 1)
    step = torch.where(valid.narrow(dim, 1, n - 1) & valid.narrow(dim, 0, n - 1), step,
                       torch.nan)
    pad_after, pad_before = [0] * 4, [0] * 4
    pad_after[2 * (2 - dim) + 1] = 1
    pad_before[2 * (2 - dim)] = 1
    before = F.pad(step, pad_before, value=torch.nan)
    after = F.pad(step, pad_after, value=torch.nan)
    slope = torch.where(before.isnan(), after,
                        torch.where(after.isnan(), before, _minmod(before, after)))
    return step, slope.nan_to_num(0.0)


def surface_edges(depth_m: torch.Tensor, valid: torch.Tensor, tolerance: float,
                  max_slope: float, dim: int) -> torch.Tensor:
    """(f, H, W) depth, valid -> bool, one shorter along `dim` (1 = rows, 2 = columns): True
    where pixel k and k + 1 lie on one surface. They do when the inverse-depth step between
    them is within `tolerance` x the nearer inverse depth of the step that either pixel's own
    slope predicts (exact for planes, however grazing), and below `max_slope`."""
    inv = torch.where(valid, depth_m.reciprocal(), 0.0)
    step, slope = _steps(inv, valid, dim)
    n = inv.shape[dim]
    scale = torch.maximum(inv.narrow(dim, 1, n - 1), inv.narrow(dim, 0, n - 1))
    misfit = torch.minimum((step - slope.narrow(dim, 0, n - 1)).abs(),
                           (step - slope.narrow(dim, 1, n - 1)).abs())
    return (misfit <= tolerance * scale) & (step.abs() <= max_slope * scale)   # NaN: False


def flying_pixels(depth_m: torch.Tensor, valid: torch.Tensor, tolerance: float) -> torch.Tensor:
    """(f, H, W) bool: pixels half-way across a depth step along a row or column. Such a
    pixel steps by more than 4 x `tolerance` (relative inverse depth) to both neighbours, in
    one direction, and both neighbours bend there (their own surfaces do not continue into
    it), where a steep but real surface runs on straight. (The 4 x spares the last pixels of
    a surface seen within a few degrees of edge-on, which bend into the background too.)"""
    inv = torch.where(valid, depth_m.reciprocal(), 0.0)
    flying = torch.zeros_like(valid)
    for dim in (1, 2):
        n = inv.shape[dim]
        step = inv.narrow(dim, 1, n - 1) - inv.narrow(dim, 0, n - 1)
        both = valid.narrow(dim, 1, n - 1) & valid.narrow(dim, 0, n - 1)
        step = torch.where(both, step, torch.nan)
        big = step.abs() > 4.0 * tolerance * inv.narrow(dim, 1, n - 1).maximum(
            inv.narrow(dim, 0, n - 1))                                    # (n - 1), NaN: no
        bend = (step.narrow(dim, 1, n - 2) - step.narrow(dim, 0, n - 2)).abs() \
            > tolerance * inv.narrow(dim, 1, n - 2)                       # at pixels 1..n-2
        # Pixel k (2 <= k <= n - 3): steps k-1 -> k and k -> k+1 big, same sign; bends at
        # k - 1 and k + 1.
        m = n - 4
        if m <= 0:
            continue
        same = step.narrow(dim, 1, m) * step.narrow(dim, 2, m) > 0
        here = (big.narrow(dim, 1, m) & big.narrow(dim, 2, m) & same
                & bend.narrow(dim, 0, m) & bend.narrow(dim, 2, m))
        flying.narrow(dim, 2, m).logical_or_(here)
    return flying


def _grid_faces(depth_m: torch.Tensor, valid: torch.Tensor,
                config: LiftConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """Triangles of each 2x2 pixel block (a, b / c, d) whose edges join one surface: (a, b, c)
    and (d, c, b) when all four sides do, else every corner triangle whose two sides do.
    Returns the flat grid index of each triangle's block corner a (T,) and its three flat
    grid indices (T, 3)."""
    num_frames, height, width = depth_m.shape
    across = surface_edges(depth_m, valid, config.edge_tolerance, config.max_surface_slope, 2)
    down = surface_edges(depth_m, valid, config.edge_tolerance, config.max_surface_slope, 1)
    top, bottom = across[:, :-1], across[:, 1:]                    # (f, H - 1, W - 1) each
    left, right = down[:, :, :-1], down[:, :, 1:]
    whole = top & bottom & left & right
    a = (torch.arange(num_frames)[:, None, None] * (height * width)
         + torch.arange(height - 1)[:, None] * width + torch.arange(width - 1))
    b, c, d = a + 1, a + width, a + width + 1
    corners = ((a, b, c, top & left), (d, c, b, bottom & right),
               (b, d, a, top & right & ~whole), (c, a, d, bottom & left & ~whole))
    faces = torch.cat([torch.stack((p, q, r), -1)[use] for p, q, r, use in corners])
    corner = torch.cat([a[use] for *_, use in corners])
    return corner, faces


def _neighbour_spacing(points: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """(f, H, W) distance from each lifted pixel's point to its nearer valid neighbour along
    each image axis, the larger of the two axes. Taking the nearer side skips the neighbour
    across a depth edge; a pixel with no valid neighbour on an axis uses the other axis."""

    def axis_spacing(dim: int) -> torch.Tensor:
        step = torch.linalg.vector_norm(points.diff(dim=dim), dim=-1)
        length = valid.shape[dim] - 1
        both = valid.narrow(dim, 1, length) & valid.narrow(dim, 0, length)
        step = torch.where(both, step, torch.inf)
        pad = [0, 0, 0, 0]
        pad[2 * (2 - dim) + 1] = 1                       # inf beyond the last pixel ...
        after = F.pad(step, pad, value=torch.inf)
        pad = [0, 0, 0, 0]
        pad[2 * (2 - dim)] = 1                           # ... and before the first
        before = F.pad(step, pad, value=torch.inf)
        return torch.minimum(after, before)

    along_u, along_v = axis_spacing(2), axis_spacing(1)
    spacing = torch.maximum(along_u, along_v)
    spacing = torch.where(torch.isinf(spacing), torch.minimum(along_u, along_v), spacing)
    return torch.where(torch.isinf(spacing), 0.0, spacing)


def _tile_order(num_frames: int, height: int, width: int) -> torch.Tensor:
    """(f, H*W) sort key grouping pixels by frame, then by TILE_PX x TILE_PX image tile, so
    that consecutive points are neighbours (the renderer culls chunks of them at once)."""
    rows = torch.arange(height)[:, None] // TILE_PX
    cols = torch.arange(width)[None, :] // TILE_PX
    tiles = (rows * (-(-width // TILE_PX)) + cols).flatten()
    per_frame = tiles.max() + 1
    return tiles[None] + per_frame * torch.arange(num_frames)[:, None]
