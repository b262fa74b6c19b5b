"""Random-weight perception model directories, for tests and `egox bench perception`.

`save_depth_model(path, name)` writes a directory exactly as save_pretrained does (config,
weights, preprocessor_config.json), so it goes through the users' loading code. "tiny-*"
models are a few thousand parameters; the others have the published architectures' sizes
(Depth Anything V2 Small / Large, Depth Pro) with random weights: timing, not depth.
Weights are seeded (`seed`); the tiny models' last layer is damped around a positive bias
so their outputs are valid, plausible values (Depth Pro about 1 m, relative disparity about
1) instead of a ReLU's zeros: tests of the plumbing need valid depth, not good depth.
"""
from __future__ import annotations

import json
from pathlib import Path

__all__ = ["DEPTH_MODELS", "build_depth_model", "save_depth_model"]

_IMAGENET = {"image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225]}
_DA_PROCESSOR = {"size": {"height": 518, "width": 518}, "keep_aspect_ratio": True,
                 "ensure_multiple_of": 14, **_IMAGENET}

#: name -> (model_type, config keyword arguments, preprocessor config).
DEPTH_MODELS: dict[str, tuple[str, dict, dict]] = {
    "tiny-da-relative": ("depth_anything", dict(
        backbone=dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=32, out_indices=[1, 2]),
        reassemble_hidden_size=16, reassemble_factors=[2, 1], neck_hidden_sizes=[8, 16],
        fusion_hidden_size=8, head_hidden_size=4, depth_estimation_type="relative"),
        {**_DA_PROCESSOR, "size": {"height": 28, "width": 28}}),
    "tiny-da-metric": ("depth_anything", dict(
        backbone=dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=32, out_indices=[1, 2]),
        reassemble_hidden_size=16, reassemble_factors=[2, 1], neck_hidden_sizes=[8, 16],
        fusion_hidden_size=8, head_hidden_size=4, depth_estimation_type="metric",
        max_depth=20), {**_DA_PROCESSOR, "size": {"height": 28, "width": 28}}),
    "tiny-depth-pro": ("depth_pro", dict(
        encoder=dict(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                     intermediate_size=32, patch_size=4, image_size=16),
        patch_size=16, fusion_hidden_size=8, intermediate_hook_ids=[1, 0],
        intermediate_feature_dims=[8, 8], scaled_images_ratios=[0.5, 1],
        scaled_images_overlap_ratios=[0.0, 0.25], scaled_images_feature_dims=[8, 8]),
        {"size": {"height": 32, "width": 32}, "image_mean": [0.5] * 3, "image_std": [0.5] * 3}),
    "da-v2-small": ("depth_anything", dict(
        backbone=dict(hidden_size=384, num_hidden_layers=12, num_attention_heads=6,
                      intermediate_size=1536, out_indices=[3, 6, 9, 12]),
        reassemble_hidden_size=384, reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=[48, 96, 192, 384], fusion_hidden_size=64, head_hidden_size=32,
        depth_estimation_type="relative"), _DA_PROCESSOR),
    "da-v2-large": ("depth_anything", dict(
        backbone=dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                      intermediate_size=4096, out_indices=[5, 12, 18, 24]),
        reassemble_hidden_size=1024, reassemble_factors=[4, 2, 1, 0.5],
        neck_hidden_sizes=[256, 512, 1024, 1024], fusion_hidden_size=256,
        head_hidden_size=32, depth_estimation_type="relative"), _DA_PROCESSOR),
    "depth-pro": ("depth_pro", dict(
        encoder=dict(hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
                     intermediate_size=4096, patch_size=16, image_size=384),
        patch_size=384, intermediate_hook_ids=[11, 5], use_fov_model=True),
        {"size": {"height": 1536, "width": 1536}, "image_mean": [0.5] * 3,
         "image_std": [0.5] * 3}),
}


def build_depth_model(name: str, seed: int = 0):
    """(random-weight model, preprocessor config dict) of `name` (a key of DEPTH_MODELS)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model, processor = _build(name)
    if name.startswith("tiny-"):
        last = (model.head.layers[-2] if DEPTH_MODELS[name][0] == "depth_pro"
                else model.head.conv3)
        with torch.no_grad():
            last.weight.mul_(0.01)
            last.bias.fill_(0.5 if DEPTH_MODELS[name][0] == "depth_pro" else 1.0)
    return model, processor


def _build(name: str):
    from transformers import (DepthAnythingConfig, DepthAnythingForDepthEstimation,
                              DepthProConfig, DepthProForDepthEstimation, Dinov2Config)

    model_type, kwargs, processor = DEPTH_MODELS[name]
    kwargs = dict(kwargs)
    if model_type == "depth_anything":
        backbone = Dinov2Config(patch_size=14, image_size=518, reshape_hidden_states=False,
                                **kwargs.pop("backbone"))
        model = DepthAnythingForDepthEstimation(DepthAnythingConfig(backbone_config=backbone,
                                                                    **kwargs))
    else:
        encoder = {"model_type": "dinov2", **kwargs.pop("encoder")}
        model = DepthProForDepthEstimation(DepthProConfig(
            image_model_config=encoder, patch_model_config=dict(encoder),
            fov_model_config=dict(encoder), **kwargs))
    return model.eval(), dict(processor)


def save_depth_model(path: str | Path, name: str, seed: int = 0) -> Path:
    """Write the random-weight model `name` (a key of DEPTH_MODELS) to `path`."""
    model, processor = build_depth_model(name, seed)
    path = Path(path)
    model.save_pretrained(path)
    (path / "preprocessor_config.json").write_text(json.dumps(processor))
    return path
