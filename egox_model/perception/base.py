"""The estimator interfaces of the perception stage and what they return.

Depth: frames (F, H, W, 3) uint8 RGB + their pinhole intrinsics -> `DepthPrediction`, either
metric depth in metres or relative inverse depth (affine-ambiguous disparity), with `kind`
saying which. Masks: frames + text phrases -> (F, H, W) bool, True = dynamic object.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Literal

import numpy as np

from egox_model.errors import InputError
from egox_model.geometry.camera import Intrinsics

__all__ = ["DepthEstimator", "DepthKind", "DepthPrediction", "MaskEstimator", "check_frames"]

#: "metric": depth in metres; "inverse_relative": 1/depth up to an unknown scale and shift.
DepthKind = Literal["metric", "inverse_relative"]


def check_frames(frames: np.ndarray) -> np.ndarray:
    """`frames` as a non-empty (F, H, W, 3) uint8 array, or InputError."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[0] == 0 or frames.shape[-1] != 3:
        raise InputError(f"frames must be a non-empty (F, H, W, 3) array, got {frames.shape}")
    if frames.dtype != np.uint8:
        raise InputError(f"frames must be uint8 RGB, got dtype {frames.dtype}")
    return frames


@dataclass
class DepthPrediction:
    """values (F, H, W) float32 at the input frames' size; 0 = invalid. kind: see DepthKind."""

    values: np.ndarray
    kind: DepthKind

    def inverse_depth(self) -> np.ndarray:
        """(F, H, W) float32 inverse depth (metric 1/m, or relative); 0 where invalid."""
        if self.kind == "inverse_relative":
            return np.where(np.isfinite(self.values) & (self.values > 0), self.values,
                            0.0).astype(np.float32)
        with np.errstate(divide="ignore"):
            inv = np.where(self.values > 0, 1.0 / self.values, 0.0)
        return np.nan_to_num(inv, nan=0.0, posinf=0.0).astype(np.float32)


class DepthEstimator(abc.ABC):
    """A per-frame depth model: `kind` says what `estimate` returns, `info` what diagnostics
    report (model, licence, ...)."""

    kind: DepthKind
    info: dict

    @abc.abstractmethod
    def estimate(self, frames: np.ndarray, K: Intrinsics) -> DepthPrediction:
        """Depth of every frame (F, H, W, 3) uint8 taken with pinhole intrinsics K."""


class MaskEstimator(abc.ABC):
    """Dynamic-object masks from text phrases. `info` holds what diagnostics report."""

    info: dict

    @abc.abstractmethod
    def estimate(self, frames: np.ndarray, phrases: list[str]) -> np.ndarray:
        """(F, H, W) bool, True = an object named by one of `phrases`, for frames
        (F, H, W, 3) uint8 of one video."""
