"""LoRA on Wan's attention projections with peft: add, save, load (official EgoX naming), fuse.

File format (the official EgoX release's `pytorch_lora_weights.safetensors`, also what
diffusers' `save_lora_weights` writes): keys `transformer.blocks.N.attn1.to_q.lora_A.weight`
/ `.lora_B.weight`, on to_q, to_k, to_v, to_out.0 of attn1 and attn2, r = alpha = 256.
`load_lora` also takes peft's own prefixes (`base_model.model.`, none) and
`.lora_A.<adapter>.weight` keys. We store `lora_alpha` and `rank` in the file's metadata; files
without it (the official one) get alpha = rank, i.e. scale 1, as the release trains them.
"""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from egox_model.errors import ModelLoadError

__all__ = ["ADAPTER", "LORA_TARGETS", "add_lora", "fuse_lora", "load_lora", "lora_state_dict",
           "save_lora"]

ADAPTER = "egox"
#: Projection names LoRA wraps in attn1 (self) and attn2 (cross) of every block.
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
_KEY = re.compile(r"^(?:transformer\.|base_model\.model\.|diffusion_model\.)?"
                  r"(blocks\.\d+\.attn[12]\.(?:to_q|to_k|to_v|to_out\.0))"
                  r"\.(lora_A|lora_B)(?:\.[A-Za-z0-9_]+)?\.weight$")


def _config(rank: int, alpha: float, targets: list[str], rank_pattern: dict | None = None):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights=True,
                      rank_pattern=rank_pattern or {}, alpha_pattern={})


def add_lora(transformer, rank: int = 256, alpha: float = 256.0) -> None:
    """Wrap to_q/to_k/to_v/to_out.0 of every attn1 and attn2 with a fresh LoRA (B = 0)."""
    targets = [f"blocks.{i}.{attn}.{proj}" for i in range(len(transformer.blocks))
               for attn in ("attn1", "attn2") for proj in LORA_TARGETS]
    transformer.add_adapter(_config(rank, alpha, targets), adapter_name=ADAPTER)


def lora_state_dict(transformer) -> dict[str, torch.Tensor]:
    """The adapter's weights with official keys (`transformer.blocks.N....lora_A.weight`)."""
    from peft import get_peft_model_state_dict

    state = get_peft_model_state_dict(transformer, adapter_name=ADAPTER)
    return {f"transformer.{k}": v.detach().cpu().contiguous() for k, v in state.items()}


def save_lora(transformer, path: Path) -> Path:
    """Write the adapter to `path` (a .safetensors file, or a folder that gets
    pytorch_lora_weights.safetensors), with rank and alpha in the metadata."""
    path = Path(path)
    if path.suffix != ".safetensors":
        path.mkdir(parents=True, exist_ok=True)
        path = path / "pytorch_lora_weights.safetensors"
    config = transformer.peft_config[ADAPTER]
    save_file(lora_state_dict(transformer), str(path),
              metadata={"rank": str(config.r), "lora_alpha": str(config.lora_alpha)})
    return path


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    if path.is_dir():
        path = path / "pytorch_lora_weights.safetensors"
    if not path.is_file():
        raise ModelLoadError(f"lora_path {str(path)!r} does not exist; give the .safetensors "
                             "file (or its folder holding pytorch_lora_weights.safetensors)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        return load_file(str(path)), metadata
    except (SafetensorError, OSError) as err:
        raise ModelLoadError(f"lora_path {str(path)!r} is not a readable safetensors file: "
                             f"{err}") from err


def load_lora(transformer, path: Path) -> dict[str, int | float]:
    """Add the LoRA stored at `path` to `transformer` (unfused). Returns rank, alpha, modules.

    Raises ModelLoadError for unknown keys, missing A/B halves, shapes that do not fit the
    transformer, or modules the transformer lacks.
    """
    from peft import set_peft_model_state_dict

    raw, metadata = _read(path)
    state: dict[str, torch.Tensor] = {}
    for key, value in raw.items():
        match = _KEY.match(key)
        if match is None:
            raise ModelLoadError(f"LoRA file {path} has key {key!r}, which is not a LoRA on "
                                 f"{'/'.join(LORA_TARGETS)} of attn1/attn2 "
                                 "(expected e.g. transformer.blocks.0.attn1.to_q.lora_A.weight)")
        state[f"{match[1]}.{match[2]}.weight"] = value
    modules = sorted({k.rsplit(".lora_", 1)[0] for k in state})
    if not modules:
        raise ModelLoadError(f"LoRA file {path} holds no LoRA weights")
    module_names = dict(transformer.named_modules())
    for name in modules:
        if name not in module_names:
            raise ModelLoadError(f"LoRA file {path} targets {name}, which this transformer "
                                 f"lacks ({len(transformer.blocks)} blocks): wrong base model")
        if f"{name}.lora_A.weight" not in state or f"{name}.lora_B.weight" not in state:
            raise ModelLoadError(f"LoRA file {path} has only one of lora_A/lora_B for {name}")
        down, up, base = (state[f"{name}.lora_A.weight"], state[f"{name}.lora_B.weight"],
                          module_names[name])
        if (down.shape[1], up.shape[0]) != (base.in_features, base.out_features) or \
                down.shape[0] != up.shape[1]:
            raise ModelLoadError(f"LoRA {name}: A {tuple(down.shape)} / B {tuple(up.shape)} do "
                                 f"not fit a {base.in_features}->{base.out_features} layer")
    ranks = {name: state[f"{name}.lora_A.weight"].shape[0] for name in modules}
    rank = Counter(ranks.values()).most_common(1)[0][0]
    alpha = float(metadata.get("lora_alpha", rank))
    pattern = {name: r for name, r in ranks.items() if r != rank}
    transformer.add_adapter(_config(rank, alpha, modules, pattern), adapter_name=ADAPTER)
    result = set_peft_model_state_dict(transformer, state, adapter_name=ADAPTER)
    unexpected = [k for k in result.unexpected_keys if "lora_" in k]
    if unexpected:
        raise ModelLoadError(f"LoRA weights not used by the transformer: {unexpected[:4]}")
    return {"rank": rank, "alpha": alpha, "modules": len(modules)}


def fuse_lora(transformer, scale: float = 1.0) -> None:
    """Merge the LoRA into the base weights (W += scale * alpha/r * B A) and drop the adapter,
    leaving plain Linear layers (no inference overhead)."""
    transformer.fuse_lora(lora_scale=scale)
    transformer.unload_lora()
