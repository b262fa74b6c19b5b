"""A tiny random-weight Wan 2.1 I2V model directory, and a synthetic clip to feed it, for
tests and smoke runs.

Same diffusers layout and classes as Wan2.1-I2V-14B-480P-Diffusers, so it goes through the
same loading code; built offline (the tokenizer is a WordLevel vocabulary made here).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from egox_model.clip import Clip
from egox_model.geometry.camera import Intrinsics
from egox_model.geometry.pose import look_at

__all__ = ["TINY_IMAGE_ENCODER", "TINY_TEXT_ENCODER", "TINY_TRANSFORMER", "TINY_VAE",
           "save_tiny_model_dir", "save_tokenizer", "tiny_clip"]

#: Tiny I2V transformer: in 36 = 16 + 4 + 16, 2 layers, 2 heads x 16.
TINY_TRANSFORMER = dict(
    patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=36,
    out_channels=16, text_dim=24, freq_dim=32, ffn_dim=64, num_layers=2, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=20, added_kv_proj_dim=32,
    rope_max_seq_len=1024,             # as Wan 2.1: any clip size fits
)
_WORDS = ("a person picks up the cup from table robot arm moves view egocentric kitchen "
          "hand red blue green box").split()
#: AutoencoderKLWan, UMT5Config and CLIPVisionConfig keyword arguments of the tiny model.
TINY_VAE = dict(base_dim=4, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                temperal_downsample=[False, True, True])
TINY_TEXT_ENCODER = dict(vocab_size=len(_WORDS) + 3, d_model=TINY_TRANSFORMER["text_dim"],
                         d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                         relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1)
TINY_IMAGE_ENCODER = dict(hidden_size=TINY_TRANSFORMER["image_dim"], intermediate_size=32,
                          projection_dim=8, num_hidden_layers=2, num_attention_heads=2,
                          image_size=32, patch_size=8)


def save_tokenizer(path: Path) -> None:
    """A WordLevel tokenizer over a few scene words, padding with <pad> = 0."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "</s>": 1, "<unk>": 2, **{w: i + 3 for i, w in enumerate(_WORDS)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>", eos_token="</s>",
                                   unk_token="<unk>")
    fast.save_pretrained(path)


def save_tiny_model_dir(path: Path, *, seed: int = 0) -> Path:
    """Write a tiny random-weight model directory to `path` and return it.

    Scheduler: FlowMatchEulerDiscreteScheduler with Wan's shift 3.0.
    """
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
    from transformers import (CLIPImageProcessor, CLIPVisionConfig,
                              CLIPVisionModelWithProjection, UMT5Config, UMT5EncoderModel)

    path = Path(path)
    torch.manual_seed(seed)
    WanTransformer3DModel(**TINY_TRANSFORMER).save_pretrained(path / "transformer")
    AutoencoderKLWan(**TINY_VAE).save_pretrained(path / "vae")
    UMT5EncoderModel(UMT5Config(**TINY_TEXT_ENCODER)).save_pretrained(path / "text_encoder")
    save_tokenizer(path / "tokenizer")
    CLIPVisionModelWithProjection(CLIPVisionConfig(**TINY_IMAGE_ENCODER)).save_pretrained(
        path / "image_encoder")
    CLIPImageProcessor(crop_size=32, size={"shortest_edge": 32}).save_pretrained(
        path / "image_processor")
    FlowMatchEulerDiscreteScheduler(shift=3.0).save_pretrained(path / "scheduler")
    return path


def tiny_clip(frames: int = 5, exo_hw: tuple[int, int] = (32, 48),
              ego_hw: tuple[int, int] = (32, 32), seed: int = 0) -> Clip:
    """Random-texture exo frames of a plane 2 m away, the ego camera moving sideways.

    Sizes are (H, W) in pixels; focal lengths scale with the width (40 px at an exo width of
    48, 30 px at an ego width of 32), so any size sees the same scene.
    """
    rng = np.random.default_rng(seed)
    (eh, ew), (gh, gw) = exo_hw, ego_hw
    exo = rng.integers(0, 256, (frames, eh, ew, 3), dtype=np.uint8)
    exo_f, ego_f = 40.0 * ew / 48, 30.0 * gw / 32
    exo_K = Intrinsics(exo_f, exo_f, (ew - 1) / 2, (eh - 1) / 2, ew, eh)
    ego_K = Intrinsics(ego_f, ego_f, (gw - 1) / 2, (gh - 1) / 2, gw, gh)
    exo_c2w = np.repeat(look_at([0.0, -2.0, 1.0], [0.0, 0.0, 0.8])[None], frames, axis=0)
    ego_c2w = np.stack([look_at([0.05 * i, -1.5, 1.1], [0.0, 0.0, 0.8]) for i in range(frames)])
    return Clip(exo, exo_K, exo_c2w, ego_K, ego_c2w,
                stamps_ns=np.arange(frames, dtype=np.int64) * 33_000_000,
                exo_depth_m=np.full((frames, eh, ew), 2.0, np.float32),
                dynamic_mask=np.zeros((frames, eh, ew), bool), prompt="a person picks up the cup")
