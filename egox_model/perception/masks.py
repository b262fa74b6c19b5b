"""Text-prompted dynamic-object masks: the plumbing around a video segmenter.

A `Segmenter` tracks the objects named by text phrases through a whole clip at its own input
size and returns, per frame, a mask per object id. `TextMaskEstimator` resizes the frames
to that size, runs it once per clip, takes the union of every tracked object per frame,
resizes the masks back to the frames' size and dilates them (`dilate_px`), so object borders
stay out of the point cloud. The diagnostics count objects and frames covered.
"""
from __future__ import annotations

from typing import Protocol

import cv2
import numpy as np

from egox_model.errors import InputError
from egox_model.perception.base import MaskEstimator, check_frames

__all__ = ["Segmenter", "TextMaskEstimator", "dilate_masks"]


class Segmenter(Protocol):
    """A video segmenter prompted with text.

    `input_size` (h, w) is the frame size it runs at (None = any). `segment(frames,
    phrases)` takes frames (F, h, w, 3) uint8 and returns one dict per frame mapping object
    id -> mask (any size; bool, or float logits where > 0 is the object).
    """

    input_size: tuple[int, int] | None
    info: dict

    def segment(self, frames: np.ndarray, phrases: list[str]) -> list[dict[int, np.ndarray]]:
        ...


def dilate_masks(masks: np.ndarray, radius: int) -> np.ndarray:
    """(F, H, W) bool masks grown by a disk of `radius` pixels."""
    if radius <= 0:
        return masks
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    return np.stack([cv2.dilate(m.astype(np.uint8), disk) for m in masks]).astype(bool)


def _to_frame(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    mask = np.asarray(mask)
    mask = mask.reshape(mask.shape[-2:])
    if mask.dtype == bool:
        mask = mask.astype(np.float32) - 0.5          # logits-like: > 0 is the object
    mask = mask.astype(np.float32)
    if mask.shape != (height, width):
        mask = cv2.resize(mask, (width, height), interpolation=cv2.INTER_LINEAR)
    return mask > 0


class TextMaskEstimator(MaskEstimator):
    """Masks of the objects named by phrases, from a `Segmenter` (see module docstring)."""

    def __init__(self, segmenter: Segmenter, dilate_px: int = 4) -> None:
        self.segmenter, self.dilate_px = segmenter, dilate_px
        self.info = dict(getattr(segmenter, "info", {}))
        self.last: dict = {}

    def estimate(self, frames: np.ndarray, phrases: list[str]) -> np.ndarray:
        """(F, H, W) bool masks of frames (F, H, W, 3) uint8."""
        frames = check_frames(frames)
        if not phrases:
            raise InputError("the mask model needs at least one phrase (perception.mask_phrases)")
        num, height, width = frames.shape[:3]
        size = self.segmenter.input_size
        small = frames
        if size is not None and tuple(size) != (height, width):
            small = np.stack([cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA)
                              for f in frames])
        per_frame = self.segmenter.segment(small, list(phrases))
        if len(per_frame) != num:
            raise InputError(f"the segmenter returned {len(per_frame)} frames of masks for a "
                             f"clip of {num} frames")
        masks = np.zeros((num, height, width), bool)
        ids: set[int] = set()
        for f, objects in enumerate(per_frame):
            for obj_id, mask in objects.items():
                masks[f] |= _to_frame(mask, height, width)
                ids.add(int(obj_id))
        self.last = {"objects": len(ids), "frames_with_objects": int(masks.any((1, 2)).sum()),
                     "phrases": list(phrases), "dilate_px": self.dilate_px}
        return dilate_masks(masks, self.dilate_px)
