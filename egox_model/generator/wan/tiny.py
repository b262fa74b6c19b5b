"""A tiny random-weight Wan 2.1 I2V model directory, for tests and CPU smoke runs.

Same diffusers layout and classes as Wan2.1-I2V-14B-480P-Diffusers, so it goes through the
same loading code; built offline (the tokenizer is a WordLevel vocabulary made here).
"""
from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["TINY_TRANSFORMER", "save_tiny_model_dir"]

#: Tiny I2V transformer: in 36 = 16 + 4 + 16, 2 layers, 2 heads x 16.
TINY_TRANSFORMER = dict(
    patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=16, in_channels=36,
    out_channels=16, text_dim=24, freq_dim=32, ffn_dim=64, num_layers=2, cross_attn_norm=True,
    qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=20, added_kv_proj_dim=32,
    rope_max_seq_len=1024,             # as Wan 2.1: any clip size fits
)
_WORDS = ("a person picks up the cup from table robot arm moves view egocentric kitchen "
          "hand red blue green box").split()


def _save_tokenizer(path: Path) -> None:
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
    AutoencoderKLWan(base_dim=4, z_dim=16, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                     temperal_downsample=[False, True, True]).save_pretrained(path / "vae")
    text_config = UMT5Config(vocab_size=len(_WORDS) + 3, d_model=TINY_TRANSFORMER["text_dim"],
                             d_kv=8, d_ff=32, num_layers=1, num_heads=2,
                             relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1)
    UMT5EncoderModel(text_config).save_pretrained(path / "text_encoder")
    _save_tokenizer(path / "tokenizer")
    image_config = CLIPVisionConfig(hidden_size=TINY_TRANSFORMER["image_dim"],
                                    intermediate_size=32, projection_dim=8, num_hidden_layers=2,
                                    num_attention_heads=2, image_size=32, patch_size=8)
    CLIPVisionModelWithProjection(image_config).save_pretrained(path / "image_encoder")
    CLIPImageProcessor(crop_size=32, size={"shortest_edge": 32}).save_pretrained(
        path / "image_processor")
    FlowMatchEulerDiscreteScheduler(shift=3.0).save_pretrained(path / "scheduler")
    return path
