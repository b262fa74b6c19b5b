"""Z-buffer rendering of a `PointCloud` at many camera poses (pure torch, batched).

A lifted cloud carries triangles (`lift_points` connects neighbouring exo pixels of one
surface): each is drawn at every pixel centre inside it, with its depth interpolated (exact
for the plane through its corners), and the pixel's colour is the perspective-correct
interpolation of its three exo pixels. A surface the exo camera sampled sparsely (seen
magnified or at a grazing angle) is therefore closed: nothing behind it shows through, and
its edges follow the surface instead of pixel blocks. The z-test is one packed int64
scatter-min of (depth bits << 32 | primitive index).

Points that no triangle uses are single pixels (at the nearest one). A cloud without
triangles is drawn as points: each lands on its nearest pixel, and one whose neighbour
spacing projects to s pixels is drawn a second time into the z-buffer of pyramid level
l = ceil(log2 s), where it fills one 2^l x 2^l block; a coarse block shows only where the
finer levels are empty or lie behind it.
"""
from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass

import numpy as np
import torch

from egox_model.config import check_settings, setting
from egox_model.errors import InputError
from egox_model.geometry.camera import Intrinsics
from egox_model.geometry.pointcloud import PointCloud

__all__ = ["RenderConfig", "RenderResult", "render_points"]

_INF_BITS = 0x7F800000          # float32 +inf: above every finite depth's bit pattern
_CHUNK = 256                    # points / triangles culled together
_MAX_FACE_PX = 4096             # larger triangle bounding boxes (pixels) are not drawn
_EDGE_EPS = 1e-4                # barycentric slack: a pixel centre on an edge is inside
_PIXEL_EPS = 1e-3               # pixel slack of the bounding boxes, for the same reason


def _empty_key(num_primitives: int) -> int:
    """Key of a pixel nothing reached: depth +inf, index `num_primitives` (a sentinel)."""
    return (_INF_BITS << 32) | num_primitives


@dataclass(frozen=True)
class RenderConfig:
    """Rendering at the ego poses (triangles; points and their splats)."""

    max_splat_level: int = setting(3, "points without triangles (lift.mesh false): the "
                                   "largest splat is 2^level pixels square (0 = 1-pixel "
                                   "points)", low=0, high=8)
    depth_tolerance: float = setting(0.05, "points without triangles: relative depth change "
                                     "per pixel of distance still counted as one surface; a "
                                     "splat covers a finer sample only when closer than that",
                                     low=0.0, low_open=True)
    views_per_batch: int = setting(2, "ego views rasterised together (more: larger "
                                   "intermediate tensors; 1-2 fastest on 2 CPU cores)", low=1)

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass
class RenderResult:
    """rgb (V, H, W, 3) uint8 (black = uncovered), depth_m (V, H, W) float32 z-depth
    (0 = uncovered) and mask (V, H, W) bool coverage, on the render device."""

    rgb: torch.Tensor
    depth_m: torch.Tensor
    mask: torch.Tensor


def _chunk_boxes(low: torch.Tensor, high: torch.Tensor, chunk: int) -> torch.Tensor:
    """The 8 corners (C, 8, 3) of the bounding box of each whole chunk of `chunk` items whose
    own boxes are low / high (n, 3) (the last chunk padded)."""
    pad = (-len(low)) % chunk
    low = torch.cat((low, low.new_full((pad, 3), torch.inf))).view(-1, chunk, 3).amin(1)
    high = torch.cat((high, high.new_full((pad, 3), -torch.inf))).view(-1, chunk, 3).amax(1)
    pick = torch.tensor([[(c >> a) & 1 for a in range(3)] for c in range(8)],
                        dtype=torch.bool, device=low.device)
    return torch.where(pick, high[:, None], low[:, None])


def _chunk_points(xyz: torch.Tensor, spacing: torch.Tensor | None,
                  chunk: int = _CHUNK) -> tuple[torch.Tensor, ...]:
    """Points in whole chunks plus one all-padding chunk at the end: coordinate planes
    (3, C + 1, chunk; padding NaN), spacing (C + 1, chunk; None without spacing), and the 8
    bounding-box corners (C, 8, 3) of each real chunk. Lifted points come ordered by image
    tile, so consecutive points are neighbours and chunk boxes are tight."""
    pad = (-len(xyz)) % chunk + chunk
    padded = torch.cat((xyz, xyz.new_full((pad, 3), torch.nan))).view(-1, chunk, 3)
    spacing = None if spacing is None else torch.cat(
        (spacing, spacing.new_zeros(pad))).view(-1, chunk)
    return (padded.permute(2, 0, 1).contiguous(), spacing,
            _chunk_boxes(xyz, xyz, chunk))


def _chunk_faces(xyz: torch.Tensor, faces: torch.Tensor,
                 chunk: int = _CHUNK) -> tuple[torch.Tensor, torch.Tensor]:
    """Triangles in whole chunks plus one all-padding chunk: vertex indices (C + 1, chunk, 3)
    (padding: index len(xyz), a NaN point the caller appends) and the chunk boxes (C, 8, 3)."""
    corners = xyz[faces]                                                   # (T, 3, 3)
    boxes = _chunk_boxes(corners.amin(1), corners.amax(1), chunk)
    pad = (-len(faces)) % chunk + chunk
    padded = torch.cat((faces, faces.new_full((pad, 3), len(xyz)))).view(-1, chunk, 3)
    return padded, boxes


def _visible_chunks(P: torch.Tensor, corners: torch.Tensor, width: int, height: int,
                    pad_id: int) -> torch.Tensor | None:
    """(V, slots) ids of the chunks whose box reaches into each view (padded with `pad_id`),
    None when no view sees any: chunks entirely behind or beside the frustum are culled
    before any per-item work (an ego camera typically sees a third of the exo points)."""
    c = torch.einsum("vij,ckj->vcki", P[:, :, :3], corners) + P[:, None, None, :, 3]
    x, y, z = c.unbind(-1)
    culled = ((z <= 0).all(-1) | (x < -0.5 * z).all(-1) | (x >= (width - 0.5) * z).all(-1)
              | (y < -0.5 * z).all(-1) | (y >= (height - 0.5) * z).all(-1))
    visible = ~culled
    counts = visible.sum(1)
    slots = int(counts.max()) if len(counts) else 0
    if slots == 0:
        return None
    first = torch.argsort((~visible).byte(), dim=1, stable=True)[:, :slots]
    return torch.where(torch.arange(slots, device=P.device) < counts[:, None], first, pad_id)


def _level_shapes(height: int, width: int, levels: int) -> list[tuple[int, int]]:
    """(rows, cols) of each pyramid level; level 0 padded to a multiple of 2^levels."""
    step = 2**levels
    rows, cols = -(-height // step) * step, -(-width // step) * step
    return [(rows >> level, cols >> level) for level in range(levels + 1)]


def _splat_points(chunks: tuple[torch.Tensor, ...], K: Intrinsics, P: torch.Tensor,
                  zbuf: torch.Tensor, shapes: list[tuple[int, int]]) -> None:
    """Scatter-min the points' packed keys (depth bits << 32 | point index) into the flat
    z-buffers zbuf (V, sum of level sizes + 1 dump slot): level 0 at the nearest pixel, and
    each point whose footprint exceeds a pixel once more into the level of its splat."""
    num_views, width, height = P.shape[0], K.width, K.height
    sizes = [rows * cols for rows, cols in shapes]
    starts = torch.tensor(np.cumsum([0] + sizes[:-1]), device=P.device)
    level_cols = torch.tensor([cols for _, cols in shapes], device=P.device)
    points, spacing, corners = chunks
    chunk = points.shape[2]
    ids = _visible_chunks(P, corners, width, height, points.shape[1] - 1)
    if ids is None:
        return
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
    offsets = torch.arange(num_views, device=P.device)[:, None] * zbuf.shape[1]
    lane = torch.arange(chunk, device=P.device)
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


def _project_all(P: torch.Tensor, xyz: torch.Tensor) -> torch.Tensor:
    """(V, N + 1, 3) pixel u, v and z-depth of the points xyz (N, 3) in each view P (V, 3, 4),
    and a NaN row at index N (for padding)."""
    uvz = torch.baddbmm(P[:, :, 3:], P[:, :, :3], xyz.T.expand(P.shape[0], 3, -1))
    uvz = torch.cat((uvz, uvz.new_full((P.shape[0], 3, 1), torch.nan)), 2)
    return torch.cat((uvz[:, :2] / uvz[:, 2:], uvz[:, 2:]), 1).transpose(1, 2).contiguous()


def _edge_coefficients(u: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Barycentric coordinates of the triangles (u, v) (..., 3) as planes in the pixel
    position: b_i = A_i x + B_i y + C_i (i = 0, 1; b_2 = 1 - b_0 - b_1), each (...)."""
    u0, u1, u2 = u.unbind(-1)
    v0, v1, v2 = v.unbind(-1)
    area2 = (u1 - u0) * (v2 - v0) - (u2 - u0) * (v1 - v0)
    A0, B0, C0 = v1 - v2, u2 - u1, u1 * v2 - u2 * v1
    A1, B1, C1 = v2 - v0, u0 - u2, u2 * v0 - u0 * v2
    inv = area2.reciprocal()
    return A0 * inv, B0 * inv, C0 * inv, A1 * inv, B1 * inv, C1 * inv


def _fused(fn):
    """`fn` through torch.compile: its elementwise chain runs as one fused loop, several
    times faster on CPU than op by op. Compiled on first use (seconds; cached on disk by
    torch across processes); op by op, with a warning, where compiling is impossible."""
    compiled = torch.compile(fn, dynamic=True)
    state = {"eager": False}

    @functools.wraps(fn)
    def call(*args):
        if not state["eager"]:
            try:
                return compiled(*args)
            except torch._dynamo.exc.BackendCompilerFailed as err:
                reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
                warnings.warn(f"egox render: torch.compile failed ({reason}); running op by "
                              f"op", RuntimeWarning, stacklevel=2)
                state["eager"] = True
        return fn(*args)

    return call


@_fused
def _triangle_boxes(corners: torch.Tensor, last_pixel: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Bounding boxes of projected triangles corners (n, vertex, (u, v, z)): the first pixel
    centre (n, 2) (col, row; float), the extent (n, 2) in pixel centres and whether to draw
    each (n,): front-facing (counter-clockwise in pixels, as every triangle is in the exo
    view), in front of the camera, reaching a pixel centre, bounding box at most
    `_MAX_FACE_PX`. last_pixel: (2,) the image's last col, row."""
    c0, c1, c2 = corners.unbind(1)
    low = torch.minimum(torch.minimum(c0, c1), c2)
    high = torch.maximum(torch.maximum(c0, c1), c2)
    first = (low[:, :2] - _PIXEL_EPS).ceil().clamp_min(0.0)
    extent = torch.minimum((high[:, :2] + _PIXEL_EPS).floor(), last_pixel) - first + 1.0
    e1, e2 = c1 - c0, c2 - c0
    area2 = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    draw = ((area2 > 0) & (low[:, 2] > 0) & (extent[:, 0] > 0) & (extent[:, 1] > 0)
            & (extent[:, 0] * extent[:, 1] <= _MAX_FACE_PX))                # NaN: False
    return first, extent, draw


@_fused
def _triangle_planes(corners: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
    """(n, 9): barycentric planes b0 = (A0, B0, C0), b1 = (A1, B1, C1) in pixel offsets from
    `first` (small, exact numbers), and inverse depth as (1/z0 - 1/z2, 1/z1 - 1/z2, 1/z2)
    over (b0, b1, 1)."""
    A0, B0, C0, A1, B1, C1 = _edge_coefficients(corners[..., 0] - first[:, :1],
                                                corners[..., 1] - first[:, 1:])
    d0, d1, d2 = corners[..., 2].reciprocal().unbind(-1)
    return torch.stack((A0, B0, C0, A1, B1, C1, d0 - d2, d1 - d2, d2), -1)


@_fused
def _candidates_inside(plane: torch.Tensor, offset: torch.Tensor,
                       ncols: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Pixel centres `offset` (n,) (row-major in a box ncols wide) of triangles `plane`
    (n, 9): whether inside, their inverse depth, and their col, row offsets in the box."""
    dy = torch.div(offset, ncols, rounding_mode="floor")
    dx = offset - dy * ncols
    fx, fy = dx.float(), dy.float()
    b0 = plane[:, 0] * fx + plane[:, 1] * fy + plane[:, 2]
    b1 = plane[:, 3] * fx + plane[:, 4] * fy + plane[:, 5]
    inv_depth = plane[:, 6] * b0 + plane[:, 7] * b1 + plane[:, 8]
    inside = ((b0 >= -_EDGE_EPS) & (b1 >= -_EDGE_EPS) & (b0 + b1 <= 1.0 + _EDGE_EPS)
              & (inv_depth > 0))
    return inside, inv_depth, dx, dy


def _rasterize_faces(faces: tuple[torch.Tensor, torch.Tensor], uvz: torch.Tensor,
                     K: Intrinsics, P: torch.Tensor, zbuf: torch.Tensor, cols: int,
                     first_id: int) -> None:
    """Scatter-min the key (interpolated depth bits << 32 | first_id + triangle index) of
    every pixel centre inside each triangle into level 0 of zbuf (V, ...); uvz (V, N + 1, 3)
    are the projected points (`_project_all`). Per view, each triangle is tested at the
    pixel centres of its bounding box (see `_triangle_boxes` for those skipped)."""
    num_views, width, height = P.shape[0], K.width, K.height
    padded, boxes = faces
    chunk = padded.shape[1]
    ids = _visible_chunks(P, boxes, width, height, padded.shape[0] - 1)
    if ids is None:
        return
    tri = (padded.view(padded.shape[0], -1).index_select(0, ids.view(-1)).view(num_views, -1)
           + torch.arange(num_views, device=P.device)[:, None] * uvz.shape[1])  # (V, 3M)
    corners = uvz.view(-1, 3).index_select(0, tri.view(-1)).view(-1, 3, 3)  # (VM, vertex, uvz)
    last_pixel = torch.tensor([width - 1.0, height - 1.0], device=P.device)
    first, extent, draw = _triangle_boxes(corners, last_pixel)
    drawn = draw.nonzero()[:, 0]
    if len(drawn) == 0:
        return
    view = drawn // (corners.shape[0] // num_views)
    face_id = (ids[:, :, None] * chunk
               + torch.arange(chunk, device=P.device)).view(-1).index_select(0, drawn)
    first, extent = first.index_select(0, drawn), extent.index_select(0, drawn).long()
    plane = _triangle_planes(corners.index_select(0, drawn), first)     # (D, 9)
    first = first.long()
    base = view * zbuf.shape[1] + first[:, 1] * cols + first[:, 0]
    # One candidate per pixel centre of each box.
    count = extent[:, 0] * extent[:, 1]
    which = torch.repeat_interleave(torch.arange(len(drawn), device=P.device), count)
    start = torch.cumsum(count, 0) - count
    offset = torch.arange(len(which), device=P.device) - start.index_select(0, which)
    inside, inv_depth, dx, dy = _candidates_inside(
        plane.index_select(0, which), offset, extent[:, 0].index_select(0, which))
    hit = inside.nonzero()[:, 0]
    face = which.index_select(0, hit)
    key = ((inv_depth.index_select(0, hit).reciprocal().view(torch.int32).long() << 32)
           | (face_id.index_select(0, face) + first_id))
    pixel = (base.index_select(0, face) + dy.index_select(0, hit) * cols
             + dx.index_select(0, hit))
    zbuf.view(-1).scatter_reduce_(0, pixel, key, "amin")


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


@_fused
def _interpolate(xyz: torch.Tensor, rgb: torch.Tensor, P: torch.Tensor, col: torch.Tensor,
                 row: torch.Tensor) -> torch.Tensor:
    """RGB (n, 3) uint8 at pixel centres (col, row) (n,) of triangles xyz (n, 3, 3) world
    with vertex colours rgb (n, 3, 3) float, seen through P (n, 3, 4): perspective-correct
    (linear on the surface)."""
    uvz = torch.einsum("nij,nkj->nki", P[:, :, :3], xyz) + P[:, None, :, 3]
    x, y, z = uvz.unbind(-1)                                               # (n, 3) each
    _, _, b0, _, _, b1 = _edge_coefficients(x / z - col[:, None], y / z - row[:, None])
    weights = (torch.stack((b0, b1, 1.0 - b0 - b1), -1).clamp(0.0, 1.0) / z)
    weights = weights / weights.sum(-1, keepdim=True)
    return ((weights[..., None] * rgb).sum(1) + 0.5).clamp(0, 255).to(torch.uint8)


def _face_colors(face: torch.Tensor, view: torch.Tensor, row: torch.Tensor,
                 col: torch.Tensor, cloud: PointCloud, P: torch.Tensor) -> torch.Tensor:
    """RGB (n, 3) uint8 of triangles `face` (n,) at pixel centres (row, col) of views `view`
    (each (n,)): the vertex colours interpolated perspective-correctly."""
    vertices = cloud.faces.index_select(0, face).view(-1)                  # (3n,)
    return _interpolate(cloud.xyz.index_select(0, vertices).view(-1, 3, 3),
                        cloud.rgb.index_select(0, vertices).view(-1, 3, 3).float(),
                        P.index_select(0, view), col, row)


def render_points(cloud: PointCloud, K: Intrinsics, c2w: np.ndarray | torch.Tensor,
                  config: RenderConfig = RenderConfig(), device=None) -> RenderResult:
    """Render `cloud` with camera K at each pose c2w (V, 4, 4); see `RenderResult`.

    A cloud with triangles is drawn as that surface, plus its points no triangle uses as
    single pixels; a cloud without is drawn as splatted points."""
    device = torch.device(device) if device is not None else cloud.xyz.device
    c2w = torch.as_tensor(np.asarray(c2w) if not torch.is_tensor(c2w) else c2w,
                          dtype=torch.float64)
    if c2w.ndim != 3 or c2w.shape[1:] != (4, 4):
        raise InputError(f"c2w must be (V, 4, 4), got {tuple(c2w.shape)}")
    num_faces = 0 if cloud.faces is None else len(cloud.faces)
    if len(cloud) + num_faces >= 2**31:
        raise InputError(f"point cloud too large ({len(cloud)} points, {num_faces} "
                         f"triangles): use a frame_stride")
    w2c = torch.linalg.inv(c2w).to(device=device, dtype=torch.float32)
    cloud = cloud.to(device)
    xyz, rgb, spacing, faces = cloud.xyz, cloud.rgb, cloud.spacing_m, None
    if num_faces:
        # Points no triangle uses (a one-pixel-wide structure) are single pixels: a splat
        # would cover the surfaces around them.
        loose = torch.ones(len(cloud), dtype=torch.bool, device=device)
        loose[cloud.faces.view(-1)] = False
        xyz, rgb, spacing = xyz[loose], rgb[loose], None
        faces = _chunk_faces(cloud.xyz, cloud.faces)
    num_loose = len(xyz)
    # Colours packed as one int32 per point (and a black sentinel): a 1-d gather per pixel.
    rgb32 = torch.cat((rgb, rgb.new_zeros(len(rgb), 1)), 1).view(torch.int32)
    palette = torch.cat((rgb32[:, 0], rgb32.new_zeros(1)))
    chunks = _chunk_points(xyz, spacing)
    shapes = _level_shapes(K.height, K.width,
                           config.max_splat_level if spacing is not None else 0)
    sizes = [rows * cols for rows, cols in shapes]
    K_t = torch.as_tensor(K.K, dtype=torch.float32, device=device)
    shape = (w2c.shape[0], K.height, K.width)
    out = RenderResult(torch.empty(*shape, 3, dtype=torch.uint8, device=device),
                       torch.empty(shape, device=device),
                       torch.empty(shape, dtype=torch.bool, device=device))
    for start in range(0, w2c.shape[0], config.views_per_batch):
        stop = min(start + config.views_per_batch, w2c.shape[0])
        P = K_t @ w2c[start:stop, :3, :]                                  # (V, 3, 4)
        zbuf = torch.full((stop - start, sum(sizes) + 1), _empty_key(num_loose + num_faces),
                          dtype=torch.int64, device=device)         # + 1: a dump slot per view
        _splat_points(chunks, K, P, zbuf, shapes)
        if faces is not None:
            _rasterize_faces(faces, _project_all(P, cloud.xyz), K, P, zbuf, shapes[0][1],
                             num_loose)
        levels = [part.view(stop - start, *level) for part, level in
                  zip(zbuf[:, :-1].split(sizes, dim=1), shapes)]
        zbuf = _compose(levels, config.depth_tolerance)[:, :K.height, :K.width]
        depth = (zbuf >> 32).int().view(torch.float32)
        torch.lt(depth, torch.inf, out=out.mask[start:stop])
        out.depth_m[start:stop] = depth.nan_to_num(posinf=0.0)           # inf: uncovered
        index = (zbuf & 0xFFFFFFFF).view(-1)
        rgba = palette.index_select(0, index.clamp_max(num_loose)).view(torch.uint8)
        colors = out.rgb[start:stop]
        colors.copy_(rgba.view(*zbuf.shape, 4)[..., :3])
        if faces is not None:
            pixel = ((index >= num_loose) & (index < num_loose + num_faces)).nonzero()[:, 0]
            view, rest = pixel // (K.height * K.width), pixel % (K.height * K.width)
            rgb = _face_colors(index.index_select(0, pixel) - num_loose, view,
                               (rest // K.width).float(), (rest % K.width).float(), cloud, P)
            colors.view(-1, 3).index_copy_(0, pixel, rgb)
    return out
