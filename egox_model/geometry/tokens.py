"""GGA token geometry: per latent token, the ego viewing ray and the exo 3D point.

Wan's VAE compresses 4x in time (latent frame t <-> pixel frame 4t) and 8x in space; the
transformer patchifies 1x2x2. Following the official release, the exo points come from the
depth at 1/8 resolution of frames [::4] and the ego rays from a 1/8 pixel grid; both are
average-pooled 2x2 onto the token grid *without* renormalising the rays.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from egox_model.errors import InputError
from egox_model.geometry.camera import Intrinsics
from egox_model.geometry.latent_grid import PATCH, VAE_SPACE, VAE_TIME, check_num_frames
from egox_model.geometry.projection import backproject, pixel_rays, transform_points

__all__ = ["TokenGeometry", "latent_frame_indices", "token_geometry"]


@dataclass
class TokenGeometry:
    """Token-grid geometry of one clip (world frame, metres, float32 tensors).

    ego_dirs (T, h, w_e, 3): ego viewing-ray direction of each ego token (mean of unit rays).
    ego_centers (T, 3): ego camera centre of each latent frame.
    exo_points (T, h, w_x, 3): mean exo 3D point of each exo token, NaN where invalid.
    """

    ego_dirs: torch.Tensor
    ego_centers: torch.Tensor
    exo_points: torch.Tensor

    @property
    def num_frames(self) -> int:
        """Latent frames T."""
        return self.ego_dirs.shape[0]

    @property
    def ego_hw(self) -> tuple[int, int]:
        """Ego token grid (rows, cols)."""
        return tuple(self.ego_dirs.shape[1:3])

    @property
    def exo_hw(self) -> tuple[int, int]:
        """Exo token grid (rows, cols)."""
        return tuple(self.exo_points.shape[1:3])

    def to(self, device=None, dtype=None) -> TokenGeometry:
        """Copy onto a device / dtype."""
        return TokenGeometry(*(t.to(device=device, dtype=dtype) for t in
                               (self.ego_dirs, self.ego_centers, self.exo_points)))


def latent_frame_indices(num_frames: int) -> np.ndarray:
    """Pixel frame represented by each latent frame: 0, 4, 8, ... (F must be 4k+1)."""
    check_num_frames(num_frames)
    return np.arange(0, num_frames, VAE_TIME)


def _pool_tokens(grid: torch.Tensor) -> torch.Tensor:
    """(T, H, W, 3) -> (T, H/2, W/2, 3) by 2x2 mean; NaN anywhere in a window gives NaN."""
    return F.avg_pool2d(grid.permute(0, 3, 1, 2), PATCH).permute(0, 2, 3, 1)


def token_geometry(exo_K: Intrinsics, exo_c2w: np.ndarray, exo_depth_m: np.ndarray,
                   ego_K: Intrinsics, ego_c2w: np.ndarray,
                   min_valid_fraction: float = 0.5) -> TokenGeometry:
    """Token geometry of a clip from its fused exo depth (F, H, W) and both trajectories.

    A latent pixel's depth is the mean of the valid depths in its 8x8 block; it is invalid
    (NaN) when fewer than `min_valid_fraction` of the block is valid (0 or non-finite).
    Image sizes must be multiples of 16.
    """
    num_frames, height, width = exo_depth_m.shape
    for name, k in (("exo", exo_K), ("ego", ego_K)):
        if k.width % (VAE_SPACE * PATCH) or k.height % (VAE_SPACE * PATCH):
            raise InputError(f"{name} image size {k.width}x{k.height} must be a multiple of 16")
    if (width, height) != (exo_K.width, exo_K.height):
        raise InputError(f"exo_depth_m is {width}x{height} but exo_K is "
                         f"{exo_K.width}x{exo_K.height}")
    frames = latent_frame_indices(num_frames)

    # Exo: block-mean depth at 1/8, lifted at the latent pixel centres, pooled to tokens.
    depth = torch.from_numpy(np.asarray(exo_depth_m[frames], dtype=np.float32))
    valid = (torch.isfinite(depth) & (depth > 0)).float()
    depth = torch.where(valid > 0, depth, 0.0)
    block_valid = F.avg_pool2d(valid[:, None], VAE_SPACE)[:, 0]
    block_depth = F.avg_pool2d(depth[:, None], VAE_SPACE)[:, 0] / block_valid.clamp_min(1e-6)
    block_depth = torch.where(block_valid >= min_valid_fraction, block_depth, torch.nan)
    latent_exo_K = exo_K.resized(width // VAE_SPACE, height // VAE_SPACE)
    K_exo = torch.from_numpy(latent_exo_K.K).float().expand(len(frames), 3, 3)
    exo_c2w_t = torch.from_numpy(np.asarray(exo_c2w)[frames]).float()
    points_cam = backproject(block_depth, K_exo)
    points_world = transform_points(exo_c2w_t, points_cam.flatten(1, 2)).view_as(points_cam)

    # Ego: unit world rays at the latent pixel centres, pooled to tokens (not renormalised).
    latent_ego_K = ego_K.resized(ego_K.width // VAE_SPACE, ego_K.height // VAE_SPACE)
    ego_c2w_t = torch.from_numpy(np.asarray(ego_c2w)[frames]).float()
    K_ego = torch.from_numpy(latent_ego_K.K).float().expand(len(frames), 3, 3)
    rays = pixel_rays(K_ego, ego_c2w_t, latent_ego_K.height, latent_ego_K.width)
    return TokenGeometry(ego_dirs=_pool_tokens(rays), ego_centers=ego_c2w_t[:, :3, 3].clone(),
                         exo_points=_pool_tokens(points_world))
