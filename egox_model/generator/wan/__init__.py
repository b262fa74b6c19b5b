"""The `wan` backend: Wan 2.1 I2V + EgoX LoRA + Geometry-Guided Attention (docs/wan.md).

`WanConfig` imports light; the generator and pipeline (diffusers) load on first use.
"""
import importlib

from egox_model.generator.wan.config import ConditioningOptions, WanConfig

__all__ = ["ConditioningOptions", "EgoXWanPipeline", "EgoXWanPipelineOutput", "WanConfig",
           "WanGenerator", "build_pipeline"]

_LAZY = {"WanGenerator": "backend", "build_pipeline": "backend", "EgoXWanPipeline": "pipeline",
         "EgoXWanPipelineOutput": "pipeline"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
