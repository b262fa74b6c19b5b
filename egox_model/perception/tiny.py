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

__all__ = ["DEPTH_MODELS", "SAM3_WORDS", "build_depth_model", "build_sam3_tokenizer",
           "build_sam3_video_model", "save_depth_model", "save_sam3_video_model"]

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


#: Phrases the tiny SAM 3 tokenizer knows (others map to <unk>).
SAM3_WORDS = ("person", "robot", "arm", "hand", "ball", "cup")


def build_sam3_video_model(*, image_size: int = 56, queries: int = 2, seed: int = 0):
    """A tiny random-weight Sam3VideoModel (ViT 2 layers x 32, FPN/tracker width 128: the
    tracker's object pointers need a width above its 64-channel memory) that detects
    everything (score thresholds 0) and has no hot-start delay."""
    import torch
    from transformers import Sam3Config, Sam3VideoConfig, Sam3VideoModel
    from transformers.models.sam3.configuration_sam3 import (
        Sam3DETRDecoderConfig, Sam3DETREncoderConfig, Sam3GeometryEncoderConfig,
        Sam3MaskDecoderConfig, Sam3VisionConfig, Sam3ViTConfig)

    patch, width = 14, 128
    grid = image_size // patch
    backbone = Sam3ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                             intermediate_size=64, image_size=image_size, patch_size=patch,
                             window_size=2, global_attn_indexes=[0, 1])
    vision = Sam3VisionConfig(backbone_config=backbone, fpn_hidden_size=width,
                              scale_factors=[4.0, 2.0, 1.0, 0.5])
    small = dict(num_attention_heads=4, intermediate_size=64)
    detector = Sam3Config(
        vision_config=vision,
        text_config=dict(vocab_size=len(SAM3_WORDS) + 3, hidden_size=32, intermediate_size=64,
                         projection_dim=32, num_hidden_layers=1, num_attention_heads=4,
                         max_position_embeddings=32, hidden_act="gelu"),
        geometry_encoder_config=Sam3GeometryEncoderConfig(
            hidden_size=width, num_layers=1, mask_fuser_hidden_size=width,
            mask_fuser_num_layers=1, **small),
        detr_encoder_config=Sam3DETREncoderConfig(hidden_size=width, num_layers=1, **small),
        detr_decoder_config=Sam3DETRDecoderConfig(hidden_size=width, num_layers=1,
                                                  num_queries=queries, **small),
        mask_decoder_config=Sam3MaskDecoderConfig(hidden_size=width, num_upsampling_stages=2))
    tracker_vision = vision.to_dict()
    tracker_vision["backbone_feature_sizes"] = [[4 * grid] * 2, [2 * grid] * 2, [grid] * 2]
    tracker = dict(
        model_type="sam3_tracker_video", vision_config=tracker_vision, image_size=image_size,
        prompt_encoder_config=dict(hidden_size=width, image_size=image_size, patch_size=patch),
        mask_decoder_config=dict(hidden_size=width, mlp_dim=64, num_attention_heads=4,
                                 iou_head_hidden_dim=width),
        memory_attention_hidden_size=width, memory_attention_num_layers=1,
        memory_attention_feed_forward_hidden_size=64, memory_attention_rope_feat_sizes=[grid] * 2,
        memory_encoder_hidden_size=width, memory_encoder_output_channels=64,
        mask_downsampler_embed_dim=width, memory_fuser_embed_dim=width,
        memory_fuser_intermediate_dim=64, num_maskmem=2)
    config = Sam3VideoConfig(detector_config=detector.to_dict(), tracker_config=tracker,
                             low_res_mask_size=4 * grid, hotstart_delay=0,
                             score_threshold_detection=0.0, new_det_thresh=0.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Sam3VideoModel(config).eval()


def save_sam3_video_model(path: str | Path, *, image_size: int = 56, seed: int = 0) -> Path:
    """Write the tiny SAM 3 video model with its preprocessor config and a word-level
    tokenizer over SAM3_WORDS (padding with <pad> = 0) to `path`."""
    path = Path(path)
    build_sam3_video_model(image_size=image_size, seed=seed).save_pretrained(path)
    (path / "preprocessor_config.json").write_text(json.dumps({
        "size": {"height": image_size, "width": image_size}, "image_mean": [0.5] * 3,
        "image_std": [0.5] * 3}))
    build_sam3_tokenizer().save_pretrained(path)
    return path


def build_sam3_tokenizer():
    """A word-level tokenizer over SAM3_WORDS (padding with <pad> = 0)."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(SAM3_WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>")
