"""Dynamic-object masks: given ones are used as they are; otherwise a motion-based default.

The default assumes a static exo camera: a pixel is dynamic where it differs from the
clip's per-pixel temporal median by more than `threshold` (0-255, max over channels), then
the mask is cleaned (opening) and grown (dilation) so object borders stay out of the cloud.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from egox_model.config import check_settings, setting
from egox_model.errors import InputError

__all__ = ["MotionMaskConfig", "motion_masks"]


@dataclass(frozen=True)
class MotionMaskConfig:
    """Motion masks by frame differencing, used when no dynamic-object masks are given."""

    threshold: float = setting(25.0, "colour difference (0-255) that counts as motion",
                               low=0.0, low_open=True)
    open_radius_px: int = setting(1, "morphological opening radius (pixels) against noise",
                                  low=0)
    dilate_radius_px: int = setting(4, "dilation radius (pixels) of the motion mask", low=0)

    def __post_init__(self) -> None:
        check_settings(self)


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def motion_masks(rgb: np.ndarray, config: MotionMaskConfig = MotionMaskConfig()) -> np.ndarray:
    """(F, H, W) bool, True = moving, from frames rgb (F, H, W, 3) uint8 of a static camera."""
    if rgb.ndim != 4 or rgb.shape[0] == 0:
        raise InputError(f"rgb must be (F, H, W, 3), got {rgb.shape}")
    frames = torch.from_numpy(np.ascontiguousarray(rgb))
    background = frames.median(dim=0).values
    diff = (frames.short() - background.short()).abs().amax(dim=-1)
    masks = (diff > config.threshold).numpy().astype(np.uint8)
    for f in range(masks.shape[0]):
        if config.open_radius_px:
            masks[f] = cv2.morphologyEx(masks[f], cv2.MORPH_OPEN, _disk(config.open_radius_px))
        if config.dilate_radius_px:
            masks[f] = cv2.dilate(masks[f], _disk(config.dilate_radius_px))
    return masks.astype(bool)
