"""Lift the static pixels of a clip's exo frames into one coloured world point cloud."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from egox_model.config import check_settings, setting
from egox_model.errors import ConfigError, InputError
from egox_model.geometry.camera import Intrinsics
from egox_model.geometry.projection import backproject, transform_points

__all__ = ["LiftConfig", "PointCloud", "TILE_PX", "lift_points"]

#: Points are ordered by exo image tiles of this size (pixels).
TILE_PX = 16


@dataclass
class PointCloud:
    """World points xyz (N, 3) float32 metres with colours rgb (N, 3) uint8.

    spacing_m (N,) float32, optional: distance to the next point on the same surface (the
    renderer sizes each point's splat from it; 0 = a single pixel). `lift_points` fills it
    and orders points by exo image tile, so consecutive points are neighbours.
    """

    xyz: torch.Tensor
    rgb: torch.Tensor
    spacing_m: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.xyz.shape[0]

    def to(self, device) -> PointCloud:
        """Copy onto `device`."""
        spacing = None if self.spacing_m is None else self.spacing_m.to(device)
        return PointCloud(self.xyz.to(device), self.rgb.to(device), spacing)


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

    K_t = torch.from_numpy(K.K).float().expand(len(poses), 3, 3)
    points = backproject(torch.where(valid, depth, 0.0), K_t)            # (f, H, W, 3)
    points = transform_points(torch.from_numpy(poses).float(), points.flatten(1, 2))
    spacing = _neighbour_spacing(points.view(len(poses), height, width, 3), valid)
    keep = valid.flatten(1)
    order = torch.argsort(_tile_order(len(poses), height, width)[keep], stable=True)
    return PointCloud(points[keep][order].contiguous(),
                      colors.flatten(1, 2)[keep][order].contiguous(),
                      spacing.flatten(1)[keep][order].contiguous())


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
