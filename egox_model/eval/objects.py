"""Object-level metrics: per-object mask IoU and centroid location error in ego pixels.

Masks are object-id maps (F, H, W) of integers, 0 = background, as the paired-clip format's
`ego_objects`; the same id in ground truth and prediction is the same object (the paper
tracks each object through both videos with SAM2 from DINOv3 matches; here the ids come with
the masks). For each object id present in the ground truth:

- IoU: |P & G| / |P | G| per frame where the object is in G, averaged over those frames
  (a frame where the prediction lacks it scores 0);
- location error: distance in pixels between the centroids of P and G, averaged over the
  frames where both hold the object (frames where the prediction lacks it are counted in
  `missed_frames`, not in the error).

Clip values average over objects; objects never seen in the prediction give no location
error (nan when no object is found at all).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from egox_model.errors import InputError

__all__ = ["ObjectScores", "object_scores"]


@dataclass(frozen=True)
class ObjectScores:
    """Mean IoU (0..1) and location error (pixels) over the ground truth's objects."""

    iou: float
    location_error_px: float
    objects: int
    object_frames: int
    missed_frames: int

    def as_dict(self) -> dict:
        """JSON-ready fields."""
        return dict(self.__dict__)


def _centroid(mask: np.ndarray) -> np.ndarray:
    rows, cols = np.nonzero(mask)
    return np.array([cols.mean(), rows.mean()])


def object_scores(predicted_ids: np.ndarray, target_ids: np.ndarray) -> ObjectScores:
    """Scores of the predicted object-id maps (F, H, W) against the ground truth's (F, H, W)."""
    predicted_ids, target_ids = np.asarray(predicted_ids), np.asarray(target_ids)
    if predicted_ids.shape != target_ids.shape or target_ids.ndim != 3:
        raise InputError(f"object id maps must both be (F, H, W), got predicted "
                         f"{predicted_ids.shape} and target {target_ids.shape}")
    ious, errors = [], []
    object_frames = missed = 0
    ids = [int(i) for i in np.unique(target_ids) if i != 0]
    for obj in ids:
        frame_ious, frame_errors = [], []
        for pred, target in zip(predicted_ids == obj, target_ids == obj):
            if not target.any():
                continue
            union = np.count_nonzero(pred | target)
            frame_ious.append(np.count_nonzero(pred & target) / union)
            if pred.any():
                frame_errors.append(float(np.linalg.norm(_centroid(pred) - _centroid(target))))
            else:
                missed += 1
        object_frames += len(frame_ious)
        ious.append(np.mean(frame_ious))
        if frame_errors:
            errors.append(np.mean(frame_errors))
    if not ids:
        raise InputError("the ground truth holds no object (every id is 0): no object "
                         "scores")
    return ObjectScores(iou=float(np.mean(ious)),
                        location_error_px=float(np.mean(errors)) if errors else float("nan"),
                        objects=len(ids), object_frames=object_frames, missed_frames=missed)
