"""Batched pinhole projection and back-projection in torch (same code on CPU and CUDA).

Camera coordinates are optical (x right, y down, z forward); K is 3x3 per camera.
"""
from __future__ import annotations

import torch

__all__ = ["backproject", "pixel_grid", "pixel_rays", "project", "transform_points"]


def pixel_grid(height: int, width: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """(H, W, 2) pixel-centre coordinates (u, v)."""
    v, u = torch.meshgrid(torch.arange(height, device=device, dtype=dtype),
                          torch.arange(width, device=device, dtype=dtype), indexing="ij")
    return torch.stack((u, v), dim=-1)


def backproject(depth_m: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Camera-frame points (..., H, W, 3) in metres from z-depth (..., H, W) and K (..., 3, 3)."""
    height, width = depth_m.shape[-2:]
    uv = pixel_grid(height, width, device=depth_m.device, dtype=depth_m.dtype)
    fx, fy = K[..., 0, 0, None, None], K[..., 1, 1, None, None]
    cx, cy = K[..., 0, 2, None, None], K[..., 1, 2, None, None]
    x = (uv[..., 0] - cx) / fx * depth_m
    y = (uv[..., 1] - cy) / fy * depth_m
    return torch.stack((x, y, depth_m), dim=-1)


def project(points_cam: torch.Tensor, K: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel coordinates (..., N, 2) and z-depth (..., N) of camera-frame points (..., N, 3).

    Points at or behind the camera get non-finite or meaningless uv: mask them with z > 0.
    """
    z = points_cam[..., 2]
    fx, fy = K[..., 0, 0, None], K[..., 1, 1, None]
    cx, cy = K[..., 0, 2, None], K[..., 1, 2, None]
    u = fx * points_cam[..., 0] / z + cx
    v = fy * points_cam[..., 1] / z + cy
    return torch.stack((u, v), dim=-1), z


def transform_points(T: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Apply rigid transforms T (..., 4, 4) to points (..., N, 3)."""
    return points @ T[..., :3, :3].transpose(-1, -2) + T[..., None, :3, 3]


def pixel_rays(K: torch.Tensor, c2w: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """World-frame unit viewing rays (..., H, W, 3) through every pixel centre."""
    ones = torch.ones(K.shape[:-2] + (height, width), dtype=K.dtype, device=K.device)
    dirs_cam = backproject(ones, K)
    dirs_world = dirs_cam @ c2w[..., None, :3, :3].transpose(-1, -2)
    return dirs_world / dirs_world.norm(dim=-1, keepdim=True)
