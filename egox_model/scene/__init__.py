"""Synthetic scenes with exact ground truth, for tests, the demo and benchmarks."""
from egox_model.scene.depth_estimates import DepthEstimates, synthetic_depth_estimates
from egox_model.scene.room import SceneClip, SceneConfig, render_scene

__all__ = ["DepthEstimates", "SceneClip", "SceneConfig", "render_scene",
           "synthetic_depth_estimates"]
