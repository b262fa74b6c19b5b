"""Depth and dynamic-object mask estimators for plain RGB exo cameras (docs/perception.md).

One concept per module: `base` (interfaces), `config` (the `perception.*` settings),
`model_dir` (local directories, licences, device/dtype), `depth` (Depth Anything / Depth
Pro), `temporal` (D_v from per-frame depth), `masks` (text-prompted mask plumbing), `sam3`
(Sam3VideoModel), `perceive` (filling a clip in front of a backend; import it from its
module: it sits above the generator interface, which imports this package's config),
`tiny` (random-weight model directories for tests and `egox bench perception`).
Models load lazily: importing this package imports neither transformers nor any weight.
"""
from egox_model.perception.base import (DepthEstimator, DepthKind, DepthPrediction,
                                        MaskEstimator)
from egox_model.perception.config import DEFAULT_PHRASES, PerceptionConfig

__all__ = ["DEFAULT_PHRASES", "DepthEstimator", "DepthKind", "DepthPrediction",
           "MaskEstimator", "PerceptionConfig"]
