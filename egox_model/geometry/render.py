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


def _chunk_faces(xyz: torch.Tensor, faces: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Triangles in whole chunks of `_CHUNK` plus one all-padding chunk: their world corners
    ((C + 1) * _CHUNK, vertex, xyz) (padding NaN; read in order by the rasteriser, where
    vertex indices would make it gather) and the chunk boxes (C, 8, 3)."""
    corners = xyz[faces]                                                   # (T, 3, 3)
    boxes = _chunk_boxes(corners.amin(1), corners.amax(1), _CHUNK)
    pad = (-len(faces)) % _CHUNK + _CHUNK
    return torch.cat((corners, corners.new_full((pad, 3, 3), torch.nan))), boxes


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


def _project(P: torch.Tensor, X: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Pixel u, v and z-depth of world points X (..., 3) seen through P (..., 3, 4)
    (broadcast), each (...): scalar arithmetic that the compiled loops fuse into one pass."""
    x, y, z = X[..., 0], X[..., 1], X[..., 2]
    cam = [P[..., i, 0] * x + P[..., i, 1] * y + P[..., i, 2] * z + P[..., i, 3]
           for i in range(3)]
    return cam[0] / cam[2], cam[1] / cam[2], cam[2]


def _edge_coefficients(u: tuple[torch.Tensor, ...],
                       v: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """Barycentric coordinates of the triangles with corners u, v (3 tensors each) as planes
    in the pixel position: b_i = A_i x + B_i y + C_i (i = 0, 1; b_2 = 1 - b_0 - b_1)."""
    u0, u1, u2 = u
    v0, v1, v2 = v
    area2 = (u1 - u0) * (v2 - v0) - (u2 - u0) * (v1 - v0)
    A0, B0, C0 = v1 - v2, u2 - u1, u1 * v2 - u2 * v1
    A1, B1, C1 = v2 - v0, u0 - u2, u2 * v0 - u0 * v2
    inv = area2.reciprocal()
    return A0 * inv, B0 * inv, C0 * inv, A1 * inv, B1 * inv, C1 * inv


def _fused(fn):
    """`fn` through torch.compile: its elementwise chain, gathers included, runs as one
    fused loop, several times faster on CPU than op by op. Compiled on first use (seconds;
    cached on disk by torch across processes); op by op, with a warning, where compiling is
    impossible. torch.compile is called on first use too: importing it pulls in
    torch._dynamo (~1.4 s), which a process that never renders should not pay."""
    state = {"eager": False, "compiled": None}

    @functools.wraps(fn)
    def call(*args):
        if not state["eager"]:
            if state["compiled"] is None:
                state["compiled"] = torch.compile(fn, dynamic=True)
            try:
                return state["compiled"](*args)
            except torch._dynamo.exc.BackendCompilerFailed as err:
                reason = (str(err).strip().splitlines() or [type(err).__name__])[0]
                warnings.warn(f"egox render: torch.compile failed ({reason}); running op by "
                              f"op", RuntimeWarning, stacklevel=2)
                state["eager"] = True
        return fn(*args)

    return call


def _corners(triangles: torch.Tensor, face: torch.Tensor,
             P: torch.Tensor) -> tuple[tuple[torch.Tensor, ...], ...]:
    """u, v and z (3 tensors each, one per vertex, shaped like face) of the triangles `face`
    (of world corners triangles (T, vertex, xyz)) seen through P (broadcast against face)."""
    projected = [_project(P, triangles[face, k]) for k in range(3)]
    return tuple(tuple(corner[i] for corner in projected) for i in range(3))


def _triangle_boxes(u: tuple[torch.Tensor, ...], v: tuple[torch.Tensor, ...],
                    z: tuple[torch.Tensor, ...], width: int,
                    height: int) -> tuple[torch.Tensor, ...]:
    """Bounding boxes of projected triangles (corners u, v, z): the first pixel centre
    col, row (float) and the extent in pixel centres along both, and whether to draw each:
    front-facing (counter-clockwise in pixels, as every triangle is in the exo view), in
    front of the camera, reaching a pixel centre of the width x height image, bounding box
    at most `_MAX_FACE_PX`."""
    col = (torch.minimum(torch.minimum(u[0], u[1]), u[2]) - _PIXEL_EPS).ceil().clamp_min(0.0)
    row = (torch.minimum(torch.minimum(v[0], v[1]), v[2]) - _PIXEL_EPS).ceil().clamp_min(0.0)
    ncols = ((torch.maximum(torch.maximum(u[0], u[1]), u[2]) + _PIXEL_EPS).floor()
             .clamp_max(width - 1.0) - col + 1.0)
    nrows = ((torch.maximum(torch.maximum(v[0], v[1]), v[2]) + _PIXEL_EPS).floor()
             .clamp_max(height - 1.0) - row + 1.0)
    area2 = (u[1] - u[0]) * (v[2] - v[0]) - (v[1] - v[0]) * (u[2] - u[0])
    near = torch.minimum(torch.minimum(z[0], z[1]), z[2])
    draw = ((area2 > 0) & (near > 0) & (ncols > 0) & (nrows > 0)
            & (ncols * nrows <= _MAX_FACE_PX))                              # NaN: False
    return col, row, ncols, nrows, draw


def _triangle_planes(u: tuple[torch.Tensor, ...], v: tuple[torch.Tensor, ...],
                     z: tuple[torch.Tensor, ...], col: torch.Tensor,
                     row: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """9 coefficients: barycentric planes b0 = (A0, B0, C0), b1 = (A1, B1, C1) in pixel
    offsets from (col, row) (small, exact numbers), and inverse depth as (1/z0 - 1/z2,
    1/z1 - 1/z2, 1/z2) over (b0, b1, 1)."""
    planes = _edge_coefficients(tuple(c - col for c in u), tuple(r - row for r in v))
    d0, d1, d2 = (c.reciprocal() for c in z)
    return (*planes, d0 - d2, d1 - d2, d2)


def _inside(plane: tuple[torch.Tensor, ...], dx: torch.Tensor | float,
            dy: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """Whether the pixel centres at offsets (dx, dy) from the boxes' first pixel lie inside
    the triangles `plane` (`_triangle_planes`), and their inverse depth there."""
    A0, B0, C0, A1, B1, C1, e0, e1, e2 = plane
    b0 = A0 * dx + B0 * dy + C0
    b1 = A1 * dx + B1 * dy + C1
    inv_depth = e0 * b0 + e1 * b1 + e2
    inside = ((b0 >= -_EDGE_EPS) & (b1 >= -_EDGE_EPS) & (b0 + b1 <= 1.0 + _EDGE_EPS)
              & (inv_depth > 0))
    return inside, inv_depth


def _depth_key(inv_depth: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Packed z-buffer keys (depth bits << 32 | index): positive float32 bit patterns sort
    like the floats, so the nearest is the smallest key."""
    return (inv_depth.reciprocal().view(torch.int32).long() << 32) | index


@_fused
def _one_pixel_triangles(triangles: torch.Tensor, chunk_ids: torch.Tensor, P: torch.Tensor,
                         width: int, height: int, stride: int,
                         first_id: int) -> tuple[torch.Tensor, ...]:
    """Triangles of the chunks chunk_ids (V, S) (world corners triangles (C * chunk, vertex,
    xyz), `_chunk_faces`) seen through P (V, 3, 4), in one loop over them all: each whose
    bounding box holds at most one pixel centre (most, where the ego view is not magnified)
    is tested there.
    Returns its key (`_depth_key`, index first_id + triangle) and flat z-buffer slot
    (V, S * chunk) (views `stride` apart, rows `width`; the view's last slot, a dump, where
    it misses), and which are drawn but larger (V, S * chunk)."""
    face = (chunk_ids[:, :, None] * _CHUNK
            + torch.arange(_CHUNK, device=P.device)).flatten(1)            # (V, M)
    u, v, z = _corners(triangles, face, P[:, None])
    col, row, ncols, nrows, draw = _triangle_boxes(u, v, z, width, height)
    one = draw & (ncols <= 1.0) & (nrows <= 1.0)
    inside, inv_depth = _inside(_triangle_planes(u, v, z, col, row), 0.0, 0.0)
    view = torch.arange(P.shape[0], device=P.device)[:, None] * stride
    slot = view + torch.where(one & inside, row.long() * width + col.long(), stride - 1)
    return _depth_key(inv_depth, face + first_id), slot, draw & ~one


@_fused
def _triangle_setup(triangles: torch.Tensor, chunk_ids: torch.Tensor, drawn: torch.Tensor,
                    P: torch.Tensor, width: int, height: int,
                    stride: int) -> tuple[torch.Tensor, ...]:
    """The triangles `drawn` (n,) (flat positions in `_one_pixel_triangles`' output) of the
    chunks chunk_ids (V, S): each triangle's index (n,), the flat z-buffer slot of its
    first pixel centre (n,) (views `stride` apart, rows `width`), its box's width ncols and
    number of pixel centres (n,) (`_triangle_boxes`, int64) and its planes (n, 9)
    (`_triangle_planes`)."""
    view = drawn // (chunk_ids.shape[1] * _CHUNK)
    face = chunk_ids.flatten()[drawn // _CHUNK] * _CHUNK + drawn % _CHUNK
    u, v, z = _corners(triangles, face, P[view])
    col, row, ncols, nrows, _ = _triangle_boxes(u, v, z, width, height)
    plane = torch.stack(_triangle_planes(u, v, z, col, row), -1)
    slot = view * stride + row.long() * width + col.long()
    return face, slot, ncols.long(), (ncols * nrows).long(), plane


@_fused
def _candidate_keys(plane: torch.Tensor, face: torch.Tensor, slot: torch.Tensor,
                    ncols: torch.Tensor, start: torch.Tensor, which: torch.Tensor,
                    width: int, stride: int, first_id: int) -> tuple[torch.Tensor, ...]:
    """Candidate k (one per pixel centre of each box, row-major; which (n,): its triangle,
    start: each triangle's first candidate) of the triangles plane (T, 9), face (T,), slot
    (T,) and ncols (T,) (`_triangle_setup`): its key (`_depth_key`, index first_id + face)
    and flat z-buffer slot (n,) (the view's dump slot, the last of the `stride`, where it
    lies outside the triangle)."""
    offset = torch.arange(which.shape[0], device=which.device) - start[which]
    dy = torch.div(offset, ncols[which], rounding_mode="floor")
    dx = offset - dy * ncols[which]
    inside, inv_depth = _inside(plane[which].unbind(-1), dx.float(), dy.float())
    first = slot[which]
    dump = first - first % stride + stride - 1
    return (_depth_key(inv_depth, face[which] + first_id),
            torch.where(inside, first + dy * width + dx, dump))


def _rasterize_faces(faces: tuple[torch.Tensor, torch.Tensor], K: Intrinsics,
                     P: torch.Tensor, zbuf: torch.Tensor, first_id: int) -> None:
    """Scatter-min the key (interpolated depth bits << 32 | first_id + triangle index) of
    every pixel centre inside each triangle (faces: `_chunk_faces`) into level 0 of zbuf
    (V, ...) (rows K.width). Per view, the
    triangles of the chunks that reach into it are tested: those covering at most one pixel
    centre in one fused loop, the larger ones at every pixel centre of their bounding box
    (see `_triangle_boxes` for those skipped)."""
    width, height, stride = K.width, K.height, zbuf.shape[1]
    triangles, boxes = faces
    ids = _visible_chunks(P, boxes, width, height, triangles.shape[0] // _CHUNK - 1)
    if ids is None:
        return
    key, slot, larger = _one_pixel_triangles(triangles, ids, P, width, height, stride,
                                             first_id)
    zbuf.view(-1).scatter_reduce_(0, slot.view(-1), key.view(-1), "amin")
    drawn = larger.view(-1).nonzero()[:, 0]
    if len(drawn) == 0:
        return
    face, slot, ncols, count, plane = _triangle_setup(triangles, ids, drawn, P, width, height,
                                                      stride)
    which = torch.repeat_interleave(torch.arange(len(drawn), device=P.device), count)
    start = torch.cumsum(count, 0) - count
    key, slot = _candidate_keys(plane, face, slot, ncols, start, which, width, stride,
                                first_id)
    zbuf.view(-1).scatter_reduce_(0, slot, key, "amin")


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
def _resolve_faces(key: torch.Tensor, triangles: torch.Tensor, colors: torch.Tensor,
                   loose_rgb: torch.Tensor, P: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """Colour, depth and coverage of the z-buffer key (V, H, W) (`_depth_key`; index: first
    the loose points, then the triangles with world corners triangles (>= T, vertex, xyz)
    and corner colours colors (T, vertex, rgb) uint8, then the empty sentinel) seen through
    P (V, 3, 4), in one loop over the pixels: a triangle's colour is its vertex colours
    interpolated perspective-correctly (linear on the surface), a loose point's is
    loose_rgb (L + 1, 3) uint8 (last: black).
    Returns rgb (V, H, W, 3) uint8, depth_m (V, H, W) (0 = uncovered) and mask."""
    num_loose, num_faces = loose_rgb.shape[0] - 1, colors.shape[0]
    depth = (key >> 32).int().view(torch.float32)
    index = key & 0xFFFFFFFF
    is_face = (index >= num_loose) & (index < num_loose + num_faces)
    face = (index - num_loose).clamp(0, num_faces - 1)
    u, v, z = _corners(triangles, face, P[:, None, None])
    col = torch.arange(key.shape[2], device=key.device).float()
    row = torch.arange(key.shape[1], device=key.device)[:, None].float()
    _, _, b0, _, _, b1 = _edge_coefficients(tuple(c - col for c in u),
                                            tuple(r - row for r in v))
    weights = [(b.clamp(0.0, 1.0) / depth_k) for b, depth_k in
               zip((b0, b1, 1.0 - b0 - b1), z)]
    total = weights[0] + weights[1] + weights[2]
    point = index.clamp_max(num_loose)
    channels = []
    for c in range(3):
        blend = sum(w * colors[face, k, c].float() for k, w in enumerate(weights))
        face_c = (blend / total + 0.5).clamp(0, 255).to(torch.uint8)
        channels.append(torch.where(is_face, face_c, loose_rgb[point, c]))
    mask = depth < torch.inf
    return torch.stack(channels, -1), torch.where(mask, depth, 0.0), mask


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
        colors = cloud.rgb[cloud.faces]                                     # (T, 3, 3)
        loose_rgb = torch.cat((rgb, rgb.new_zeros(1, 3)))                  # + black
    else:
        # Colours packed as one int32 per point (and a black sentinel): a 1-d gather.
        rgb32 = torch.cat((rgb, rgb.new_zeros(len(rgb), 1)), 1).view(torch.int32)
        palette = torch.cat((rgb32[:, 0], rgb32.new_zeros(1)))
    num_loose = len(xyz)
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
            _rasterize_faces(faces, K, P, zbuf, num_loose)
        levels = [part.view(stop - start, *level) for part, level in
                  zip(zbuf[:, :-1].split(sizes, dim=1), shapes)]
        zbuf = _compose(levels, config.depth_tolerance)[:, :K.height, :K.width]
        if faces is not None:
            out.rgb[start:stop], out.depth_m[start:stop], out.mask[start:stop] = \
                _resolve_faces(zbuf, faces[0], colors, loose_rgb, P)
            continue
        depth = (zbuf >> 32).int().view(torch.float32)
        torch.lt(depth, torch.inf, out=out.mask[start:stop])
        out.depth_m[start:stop] = depth.nan_to_num(posinf=0.0)           # inf: uncovered
        index = (zbuf & 0xFFFFFFFF).view(-1)
        rgba = palette.index_select(0, index.clamp_max(num_loose)).view(torch.uint8)
        out.rgb[start:stop] = rgba.view(*zbuf.shape, 4)[..., :3]
    return out
