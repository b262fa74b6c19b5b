"""Distorted views (fisheye `equidistant`, `plumb_bob`, `rational_polynomial`) to pinhole
frames, for the paired-clip format (which stores undistorted frames only)."""
from __future__ import annotations

import cv2
import numpy as np

from egox_model.geometry.camera import CameraModel, Intrinsics

__all__ = ["undistort_frames"]


def undistort_frames(camera: CameraModel, frames: np.ndarray, *, nearest: bool = False
                     ) -> tuple[np.ndarray, Intrinsics]:
    """Frames (F, H, W[, C]) of `camera` remapped to its pinhole `rectified` camera (CameraInfo
    P, else K; give `CameraModel(..., rectified=...)` for another pinhole), and that camera's
    intrinsics. `nearest` for depth / masks. Undistorted cameras pass through unchanged."""
    if not camera.is_distorted:
        return np.asarray(frames), camera.rectified
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return np.stack([camera.undistort(f, interpolation) for f in frames]), camera.rectified
