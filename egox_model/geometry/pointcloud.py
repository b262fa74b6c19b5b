"""Lift the static pixels of a clip's exo frames into one coloured world point cloud."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from egox_model.errors import InputError
from egox_model.geometry.camera import Intrinsics
from egox_model.geometry.projection import backproject, transform_points

__all__ = ["LiftConfig", "PointCloud", "lift_points"]


@dataclass
class PointCloud:
    """World points xyz (N, 3) float32 metres with colours rgb (N, 3) uint8."""

    xyz: torch.Tensor
    rgb: torch.Tensor

    def __len__(self) -> int:
        return self.xyz.shape[0]

    def to(self, device) -> PointCloud:
        """Copy onto `device`."""
        return PointCloud(self.xyz.to(device), self.rgb.to(device))


@dataclass(frozen=True)
class LiftConfig:
    """Which pixels become points.

    frame_stride: lift frames 0, s, 2s, ...
    merge_static_camera: when the exo camera does not move, lift one static background
        (per-pixel mean of the static depth and colour over the lifted frames, as the
        official release does) instead of one copy of the scene per frame.
    """

    frame_stride: int = 1
    merge_static_camera: bool = True
    static_camera_tol_m: float = 1e-3
    min_depth_m: float = 0.05
    max_depth_m: float = 100.0

    def __post_init__(self) -> None:
        if self.frame_stride < 1:
            raise InputError(f"frame_stride must be >= 1, got {self.frame_stride}")
        if not 0 <= self.min_depth_m < self.max_depth_m:
            raise InputError(f"need 0 <= min_depth_m < max_depth_m, got "
                             f"{self.min_depth_m}, {self.max_depth_m}")


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
    keep = valid.flatten(1)
    return PointCloud(points[keep].contiguous(), colors.flatten(1, 2)[keep].contiguous())
