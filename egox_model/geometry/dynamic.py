"""Dynamic-object masks: given ones are used as they are; otherwise a motion-based default.

Static exo camera: a pixel is dynamic where it differs from the clip's per-pixel temporal
median by more than `threshold` (0-255, max over channels). Moving exo camera (poses differ
between frames): the camera's own motion is compensated first: for frame t, the frames
within `window` of it are warped into t's view with t's depth and the exo poses (each
pixel of t is back-projected, moved to frame s's camera, projected and sampled there), and
a pixel is dynamic where the per-pixel median of its colour differences to those warped
frames exceeds `threshold` (pixels that leave frame s do not vote; a moving object in t
differs from most of them, one passing over t's background in a single s does not).
Either way the mask is then cleaned (opening) and grown (dilation) so object borders stay
out of the cloud.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from egox_model.config import check_settings, setting
from egox_model.errors import InputError
from egox_model.geometry.camera import Intrinsics
from egox_model.geometry.projection import backproject, project, transform_points

__all__ = ["MotionMaskConfig", "camera_moves", "motion_masks"]


@dataclass(frozen=True)
class MotionMaskConfig:
    """Motion masks by frame differencing, used when no dynamic-object masks are given."""

    threshold: float = setting(25.0, "colour difference (0-255) that counts as motion",
                               low=0.0, low_open=True)
    open_radius_px: int = setting(1, "morphological opening radius (pixels) against noise",
                                  low=0)
    dilate_radius_px: int = setting(4, "dilation radius (pixels) of the motion mask", low=0)
    window: int = setting(4, "moving exo camera: frames on each side of a frame that are "
                          "warped into its view (with its depth and the exo poses) and "
                          "compared with it (median of the differences)", low=1)

    def __post_init__(self) -> None:
        check_settings(self)


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def camera_moves(c2w: np.ndarray, tolerance: float = 1e-6) -> bool:
    """True when the (F, 4, 4) poses are not all the same (within `tolerance`)."""
    c2w = np.asarray(c2w)
    return bool(np.abs(c2w - c2w[:1]).max() > tolerance) if len(c2w) else False


def _warped_difference(frames: torch.Tensor, depth: torch.Tensor, K: torch.Tensor,
                       c2w: torch.Tensor, t: int, window: int) -> torch.Tensor:
    """(H, W) per-pixel median, over the frames near t warped into t's view, of their
    colour difference to frame t (max over channels; 0 where none of them sees the pixel)."""
    num, height, width = frames.shape[:3]
    others = [s for s in range(max(0, t - window), min(num, t + window + 1)) if s != t]
    if not others:
        return torch.zeros(height, width, device=frames.device)
    points = backproject(depth[t], K).reshape(-1, 3)
    t_to_s = (torch.linalg.inv(c2w[others]) @ c2w[t]).float()     # camera t -> camera s
    uv, z = project(transform_points(t_to_s, points.expand(len(others), -1, -1)), K)
    grid = torch.stack((2 * uv[..., 0] / (width - 1) - 1, 2 * uv[..., 1] / (height - 1) - 1), -1)
    inside = (z > 0) & (grid.abs() <= 1).all(-1) & (depth[t].reshape(-1) > 0)
    images = frames[others].permute(0, 3, 1, 2).float()
    warped = torch.nn.functional.grid_sample(images, grid.view(len(others), height, width, 2),
                                             mode="bilinear", align_corners=True)
    diff = (warped - frames[t].permute(2, 0, 1).float()).abs().amax(dim=1)
    diff[~inside.view(len(others), height, width)] = float("nan")
    return diff.nanmedian(dim=0).values.nan_to_num(0.0)


def motion_masks(rgb: np.ndarray, config: MotionMaskConfig = MotionMaskConfig(), *,
                 depth_m: np.ndarray | None = None, K: Intrinsics | None = None,
                 c2w: np.ndarray | None = None, device: str = "cpu") -> np.ndarray:
    """(F, H, W) bool, True = moving, from frames rgb (F, H, W, 3) uint8.

    With poses `c2w` (F, 4, 4) that move, the camera's motion is compensated with `depth_m`
    (F, H, W) metres and intrinsics K (module docstring); without them (or when the poses
    are all equal) the camera is taken as static. The compensation runs on `device`."""
    if rgb.ndim != 4 or rgb.shape[0] == 0:
        raise InputError(f"rgb must be (F, H, W, 3), got {rgb.shape}")
    frames = torch.from_numpy(np.ascontiguousarray(rgb))
    if c2w is not None and camera_moves(c2w):
        if depth_m is None or K is None:
            raise InputError("the exo camera moves: motion masks need its depth and intrinsics "
                             "to compensate the camera's own motion")
        depth = torch.from_numpy(np.nan_to_num(np.asarray(depth_m, np.float32), nan=0.0,
                                               posinf=0.0, neginf=0.0)).to(device)
        K_t = torch.from_numpy(K.K).float().to(device)
        poses = torch.from_numpy(np.asarray(c2w, np.float64)).to(device)
        on_device = frames.to(device)
        diff = torch.stack([_warped_difference(on_device, depth, K_t, poses, t,
                                               config.window).float().cpu()
                            for t in range(rgb.shape[0])])
    else:
        background = frames.median(dim=0).values
        diff = (frames.short() - background.short()).abs().amax(dim=-1)
    masks = (diff > config.threshold).numpy().astype(np.uint8)
    for f in range(masks.shape[0]):
        if config.open_radius_px:
            masks[f] = cv2.morphologyEx(masks[f], cv2.MORPH_OPEN, _disk(config.open_radius_px))
        if config.dilate_radius_px:
            masks[f] = cv2.dilate(masks[f], _disk(config.dilate_radius_px))
    return masks.astype(bool)
