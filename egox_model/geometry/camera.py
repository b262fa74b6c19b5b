"""Pinhole intrinsics and the distorted camera models of sensor_msgs/CameraInfo.

Frames follow ROS optical convention (REP 103): x right, y down, z forward. Pixel (u, v) has
its centre at integer coordinates, as in OpenCV and CameraInfo.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import cv2
import numpy as np

from egox_model.errors import InputError
from egox_model.validation import require_finite

__all__ = ["DISTORTION_MODELS", "CameraModel", "Intrinsics"]

#: CameraInfo distortion models egox can undistort (name -> number of coefficients accepted).
DISTORTION_MODELS = {"plumb_bob": (4, 5), "rational_polynomial": (8,), "equidistant": (4,)}


@dataclass(frozen=True)
class Intrinsics:
    """Pinhole intrinsics in pixels for an image of `width` x `height` pixels."""

    fx: float
    fy: float
    cx: float
    cy: float
    width: int
    height: int

    def __post_init__(self) -> None:
        values = (self.fx, self.fy, self.cx, self.cy)
        if not all(np.isfinite(values)):
            raise InputError(f"intrinsics must be finite, got fx,fy,cx,cy={values}")
        if self.fx <= 0 or self.fy <= 0:
            raise InputError(
                f"focal length must be positive, got fx={self.fx}, fy={self.fy} "
                "(an all-zero K means the camera is uncalibrated)")
        if self.width <= 0 or self.height <= 0:
            raise InputError(f"image size must be positive, got {self.width}x{self.height}")

    @classmethod
    def from_matrix(cls, K: np.ndarray | Sequence[float], width: int, height: int) -> Intrinsics:
        """From a 3x3 K (or its 9 row-major entries, as in CameraInfo.k)."""
        K = np.asarray(K, dtype=np.float64).reshape(3, 3)
        return cls(float(K[0, 0]), float(K[1, 1]), float(K[0, 2]), float(K[1, 2]),
                   int(width), int(height))

    @property
    def K(self) -> np.ndarray:
        """The 3x3 float64 camera matrix."""
        return np.array([[self.fx, 0.0, self.cx], [0.0, self.fy, self.cy], [0.0, 0.0, 1.0]])

    def resized(self, width: int, height: int) -> Intrinsics:
        """Intrinsics of the same camera after resizing the image to `width` x `height`."""
        sx, sy = width / self.width, height / self.height
        # Pixel centres sit at integers: a pixel edge at -0.5 maps to -0.5.
        return Intrinsics(self.fx * sx, self.fy * sy, (self.cx + 0.5) * sx - 0.5,
                          (self.cy + 0.5) * sy - 0.5, int(width), int(height))

    def cropped(self, x0: int, y0: int, width: int, height: int) -> Intrinsics:
        """Intrinsics after cropping the window starting at pixel (x0, y0)."""
        if x0 < 0 or y0 < 0 or x0 + width > self.width or y0 + height > self.height:
            raise InputError(f"crop ({x0}, {y0}, {width}x{height}) exceeds the "
                             f"{self.width}x{self.height} image")
        return Intrinsics(self.fx, self.fy, self.cx - x0, self.cy - y0, width, height)


@dataclass(frozen=True)
class CameraModel:
    """A calibrated camera as described by sensor_msgs/CameraInfo.

    `intrinsics` is the distorted camera's K; `rectified` is the pinhole camera images
    are undistorted to (CameraInfo.p's left 3x3, or K when P is all zero).
    `distortion_model` must be one of `DISTORTION_MODELS` (any D), or "" with empty or
    all-zero D (a pinhole camera, as an uncalibrated camera_info_manager leaves it); any
    other model is rejected even with all-zero D.
    """

    intrinsics: Intrinsics
    distortion_model: str = "plumb_bob"
    D: tuple[float, ...] = ()
    rectified: Intrinsics | None = None
    _maps: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        counts = DISTORTION_MODELS.get(self.distortion_model)
        if self.distortion_model == "" and self.is_distorted:
            raise InputError(
                f"distortion_model is empty but D={list(self.D)} is not all zero; name the "
                f"model (one of {sorted(DISTORTION_MODELS)})")
        if counts is None and self.distortion_model != "":
            # Rejected whatever D holds: an unknown model with zero D is most likely a
            # calibration tool's own model written without coefficients, not a pinhole.
            raise InputError(
                f"distortion_model {self.distortion_model!r} is not supported; use one of "
                f"{sorted(DISTORTION_MODELS)}, or an empty model with empty or all-zero D "
                "for a pinhole camera, or rectify the images upstream")
        if self.is_distorted:
            if len(self.D) not in counts:
                raise InputError(f"distortion_model {self.distortion_model!r} needs "
                                 f"{' or '.join(map(str, counts))} coefficients in D, "
                                 f"got {len(self.D)}")
            require_finite("D", np.asarray(self.D))
        if self.rectified is None:
            object.__setattr__(self, "rectified", self.intrinsics)

    @classmethod
    def from_camera_info(cls, *, width: int, height: int, K: Sequence[float],
                         D: Sequence[float] = (), P: Sequence[float] | None = None,
                         distortion_model: str = "plumb_bob") -> CameraModel:
        """From the fields of a CameraInfo message (k: 9 values, p: 12 values, d,
        distortion_model as published: see the class docstring for what is accepted)."""
        K = np.asarray(K, dtype=np.float64)
        if K.size != 9:
            raise InputError(f"K must have 9 entries, got {K.size}")
        if not np.any(K):
            raise InputError("CameraInfo K is all zero: the camera is uncalibrated; "
                             "calibrate it or publish a CameraInfo with a real K")
        intrinsics = Intrinsics.from_matrix(K, width, height)
        rectified = intrinsics
        if P is not None and np.any(np.asarray(P, dtype=np.float64)):
            P = np.asarray(P, dtype=np.float64).reshape(3, 4)
            rectified = Intrinsics.from_matrix(P[:, :3], width, height)
        return cls(intrinsics, str(distortion_model), tuple(float(d) for d in D), rectified)

    @property
    def is_distorted(self) -> bool:
        """True when D has a non-zero coefficient."""
        return any(d != 0.0 for d in self.D)

    def undistort(self, image: np.ndarray, interpolation: int = cv2.INTER_LINEAR) -> np.ndarray:
        """Undistort an HxW[xC] image to the `rectified` pinhole camera.

        Use INTER_NEAREST for depth or mask images. Remap tables are built once per model.
        """
        if not self.is_distorted:
            return image
        k = self.intrinsics
        if image.shape[:2] != (k.height, k.width):
            raise InputError(f"image is {image.shape[1]}x{image.shape[0]} but the camera is "
                             f"{k.width}x{k.height}")
        if "xy" not in self._maps:
            self._maps["xy"] = self._build_maps()
        map_x, map_y = self._maps["xy"]
        return cv2.remap(image, map_x, map_y, interpolation, borderMode=cv2.BORDER_CONSTANT)

    def _build_maps(self) -> tuple[np.ndarray, np.ndarray]:
        k, r = self.intrinsics, self.rectified
        size = (r.width, r.height)
        D = np.asarray(self.D, dtype=np.float64)
        if self.distortion_model == "equidistant":
            return cv2.fisheye.initUndistortRectifyMap(k.K, D, np.eye(3), r.K, size, cv2.CV_32FC1)
        return cv2.initUndistortRectifyMap(k.K, D, np.eye(3), r.K, size, cv2.CV_32FC1)
