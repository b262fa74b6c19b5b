"""Tiny random-weight perception models saved with save_pretrained, loaded back by the
users' code path (nothing is downloaded)."""
import json

import pytest


def save_tiny_depth_anything(path, *, metric=False, size=28):
    """A 2-layer Depth Anything (Dinov2 backbone width 16) with its preprocessor config."""
    from transformers import DepthAnythingConfig, DepthAnythingForDepthEstimation, Dinov2Config

    backbone = Dinov2Config(hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                            intermediate_size=32, patch_size=14, image_size=28,
                            out_indices=[1, 2], reshape_hidden_states=False)
    config = DepthAnythingConfig(backbone_config=backbone, reassemble_hidden_size=16,
                                 reassemble_factors=[2, 1], neck_hidden_sizes=[8, 16],
                                 fusion_hidden_size=8, head_hidden_size=4,
                                 depth_estimation_type="metric" if metric else "relative",
                                 max_depth=20)
    DepthAnythingForDepthEstimation(config).save_pretrained(path)
    (path / "preprocessor_config.json").write_text(json.dumps({
        "size": {"height": size, "width": size}, "keep_aspect_ratio": True,
        "ensure_multiple_of": 14, "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225]}))
    return path


def save_tiny_depth_pro(path):
    """A Depth Pro of 2-layer Dinov2 encoders at a 32x32 input."""
    from transformers import DepthProConfig, DepthProForDepthEstimation

    enc = dict(model_type="dinov2", hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
               intermediate_size=32, patch_size=4, image_size=16)
    config = DepthProConfig(patch_size=16, fusion_hidden_size=8, intermediate_hook_ids=[1, 0],
                            intermediate_feature_dims=[8, 8], scaled_images_ratios=[0.5, 1],
                            scaled_images_overlap_ratios=[0.0, 0.25],
                            scaled_images_feature_dims=[8, 8], use_fov_model=False,
                            image_model_config=enc, patch_model_config=enc, fov_model_config=enc)
    DepthProForDepthEstimation(config).save_pretrained(path)
    (path / "preprocessor_config.json").write_text(json.dumps({
        "size": {"height": 32, "width": 32}, "image_mean": [0.5, 0.5, 0.5],
        "image_std": [0.5, 0.5, 0.5]}))
    return path


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory):
    """{name: directory} of tiny saved models: da_relative, da_metric, depth_pro."""
    root = tmp_path_factory.mktemp("perception_models")
    return {"da_relative": save_tiny_depth_anything(root / "da_relative"),
            "da_metric": save_tiny_depth_anything(root / "da_metric", metric=True),
            "depth_pro": save_tiny_depth_pro(root / "depth_pro")}
