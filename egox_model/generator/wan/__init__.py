"""The `wan` backend: Wan 2.1 I2V + EgoX LoRA + Geometry-Guided Attention (docs/wan.md)."""
from egox_model.generator.wan.backend import WanGenerator, build_pipeline
from egox_model.generator.wan.conditioning import ConditioningOptions
from egox_model.generator.wan.config import WanConfig
from egox_model.generator.wan.pipeline import EgoXWanPipeline, EgoXWanPipelineOutput

__all__ = ["ConditioningOptions", "EgoXWanPipeline", "EgoXWanPipelineOutput", "WanConfig",
           "WanGenerator", "build_pipeline"]
