"""LoRA on Wan's transformer with peft: add, save, load (official EgoX naming and third-party
formats), stack several adapters, fuse.

File format (the official EgoX release's `pytorch_lora_weights.safetensors`, also what
diffusers' `save_lora_weights` writes): keys `transformer.blocks.N.attn1.to_q.lora_A.weight`
/ `.lora_B.weight`, on to_q, to_k, to_v, to_out.0 of attn1 and attn2, r = alpha = 256.
`load_lora` also takes peft's own prefixes (`base_model.model.`, none) and
`.lora_A.<adapter>.weight` keys, LoRAs on any Linear layer of the transformer (FFN, image
K/V, embedders, `lora_B.bias`), and the original-Wan naming of ComfyUI / Kijai / lightx2v files
(`diffusion_model.blocks.N.self_attn.q.lora_down.weight`, `.alpha`, `.diff_b`), which
diffusers' own converter (`_convert_non_diffusers_wan_lora_to_diffusers`, the one behind
`WanImageToVideoPipeline.load_lora_weights`) rewrites into the diffusers naming first, folding
alpha / rank into the weights. We store `lora_alpha` and `rank` in the file's metadata; files
without it (the official one) get alpha = rank, i.e. scale 1, as the release trains them.

Several adapters (each with its own peft name) may be loaded; `fuse_lora` merges them all
with per-adapter scales: W += sum_i scale_i * alpha_i / r_i * B_i A_i.
"""
from __future__ import annotations

import json
import re
import warnings
from collections import Counter
from pathlib import Path
from typing import Mapping

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from egox_model.errors import ModelLoadError

__all__ = ["ADAPTER", "LORA_TARGETS", "add_lora", "fuse_lora", "load_lora", "lora_state_dict",
           "save_lora"]

ADAPTER = "egox"
#: Projection names LoRA wraps in attn1 (self) and attn2 (cross) of every block.
LORA_TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
#: A LoRA weight in diffusers / peft naming: (module, A or B, weight or bias).
_KEY = re.compile(r"^(?:transformer\.|base_model\.model\.)?([A-Za-z0-9_.]+?)"
                  r"\.(lora_A|lora_B)(?:\.[A-Za-z0-9_]+)?\.(weight|bias)$")
#: Original Wan module naming (ComfyUI / Kijai / lightx2v files), with or without the
#: `diffusion_model.` prefix.
_WAN_NAMING = re.compile(r"^(?:diffusion_model\.)?blocks\.\d+\.(?:self_attn|cross_attn|ffn)\.")


def _config(rank: int, alpha: float, targets: list[str], rank_pattern: dict | None = None,
            alpha_pattern: dict | None = None, bias: bool = False):
    from peft import LoraConfig

    return LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets, init_lora_weights=True,
                      rank_pattern=rank_pattern or {}, alpha_pattern=alpha_pattern or {},
                      lora_bias=bias)


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


def _read(path: Path, what: str) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    path = Path(path)
    if path.is_dir():
        path = path / "pytorch_lora_weights.safetensors"
    if not path.is_file():
        raise ModelLoadError(f"{what} {str(path)!r} does not exist; give the .safetensors "
                             "file (or its folder holding pytorch_lora_weights.safetensors)")
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        return load_file(str(path)), metadata
    except (SafetensorError, OSError) as err:
        raise ModelLoadError(f"{what} {str(path)!r} is not a readable safetensors file: "
                             f"{err}") from err


def _to_diffusers_naming(raw: dict[str, torch.Tensor], path: Path) -> dict[str, torch.Tensor]:
    """Keys of original-Wan / musubi-tuner LoRA files rewritten by diffusers' converters (alpha
    folded into the weights); other files unchanged."""
    from diffusers.loaders import lora_conversion_utils as convert

    if any(_WAN_NAMING.match(k) for k in raw):
        converter = convert._convert_non_diffusers_wan_lora_to_diffusers
        raw = {(k if k.startswith("diffusion_model.") else f"diffusion_model.{k}"): v
               for k, v in raw.items()}
    elif any(k.startswith("lora_unet_") for k in raw):
        converter = convert._convert_musubi_wan_lora_to_diffusers
    else:
        return raw
    try:
        return converter(raw)
    except (KeyError, ValueError, IndexError, RuntimeError) as err:
        raise ModelLoadError(f"LoRA file {path} is in the original Wan naming but diffusers' "
                             f"converter cannot read it ({type(err).__name__}: {err}); "
                             "convert it to diffusers keys") from err


def _file_alpha(metadata: dict[str, str]) -> float | None:
    """lora_alpha from our metadata or diffusers' `lora_adapter_metadata`; None if absent."""
    if "lora_alpha" in metadata:
        return float(metadata["lora_alpha"])
    try:
        packed = json.loads(metadata.get("lora_adapter_metadata", "{}"))
    except json.JSONDecodeError:
        return None
    alpha = packed.get("transformer.lora_alpha", packed.get("lora_alpha"))
    return None if alpha is None else float(alpha)


def load_lora(transformer, path: Path, adapter_name: str = ADAPTER, *,
              what: str = "lora_path") -> dict[str, int | float]:
    """Add the LoRA stored at `path` to `transformer` (unfused) as peft adapter
    `adapter_name`. Returns rank, alpha, modules (and biases, when the file has any).

    `what` names the setting in error messages. Raises ModelLoadError for a missing or
    unreadable file, unknown keys, missing A/B halves, shapes that do not fit the transformer,
    modules the transformer lacks, and an adapter name already loaded.
    """
    from peft import set_peft_model_state_dict

    if adapter_name in (getattr(transformer, "peft_config", None) or {}):
        raise ModelLoadError(f"adapter name {adapter_name!r} is already loaded on this "
                             f"transformer ({path}); give each LoRA its own name")
    raw, metadata = _read(path, what)
    converted = _to_diffusers_naming(raw, path)
    state: dict[str, torch.Tensor] = {}
    for key, value in converted.items():
        match = _KEY.match(key)
        if match is None:
            raise ModelLoadError(f"LoRA file {path} has key {key!r}, which is not a LoRA "
                                 "weight (expected e.g. "
                                 "transformer.blocks.0.attn1.to_q.lora_A.weight)")
        state[f"{match[1]}.{match[2]}.{match[3]}"] = value
    modules = sorted({k.rsplit(".lora_", 1)[0] for k in state})
    if not modules:
        raise ModelLoadError(f"LoRA file {path} holds no LoRA weights")
    module_names = dict(transformer.named_modules())
    for name in modules:
        if name not in module_names:
            raise ModelLoadError(f"LoRA file {path} targets {name}, which this transformer "
                                 f"lacks ({len(transformer.blocks)} blocks): wrong base model")
        base = module_names[name]
        base = getattr(base, "base_layer", base)   # already wrapped by another adapter
        if not isinstance(base, torch.nn.Linear):
            raise ModelLoadError(f"LoRA file {path} targets {name}, a "
                                 f"{type(base).__name__}, not a Linear layer")
        if f"{name}.lora_A.weight" not in state or f"{name}.lora_B.weight" not in state:
            raise ModelLoadError(f"LoRA file {path} has only one of lora_A/lora_B for {name}")
        down, up = state[f"{name}.lora_A.weight"], state[f"{name}.lora_B.weight"]
        if (down.shape[1], up.shape[0]) != (base.in_features, base.out_features) or \
                down.shape[0] != up.shape[1]:
            raise ModelLoadError(f"LoRA {name}: A {tuple(down.shape)} / B {tuple(up.shape)} do "
                                 f"not fit a {base.in_features}->{base.out_features} layer")
    ranks = {name: state[f"{name}.lora_A.weight"].shape[0] for name in modules}
    rank = Counter(ranks.values()).most_common(1)[0][0]
    alpha = _file_alpha(metadata)
    pattern = {name: r for name, r in ranks.items() if r != rank}
    # Without a stored alpha every module has alpha = its rank (scale 1).
    alpha_pattern = {} if alpha is not None else {k: float(r) for k, r in pattern.items()}
    alpha = float(rank) if alpha is None else alpha
    biases = sum(k.endswith(".lora_B.bias") for k in state)
    with warnings.catch_warnings():     # stacking adapters is what we mean to do
        warnings.filterwarnings("ignore", message="Already found a `peft_config`")
        transformer.add_adapter(_config(rank, alpha, modules, pattern, alpha_pattern,
                                        biases > 0), adapter_name=adapter_name)
    result = set_peft_model_state_dict(transformer, state, adapter_name=adapter_name)
    unexpected = [k for k in result.unexpected_keys if "lora_" in k]
    if unexpected:
        raise ModelLoadError(f"LoRA weights not used by the transformer: {unexpected[:4]}")
    info: dict[str, int | float] = {"rank": rank, "alpha": alpha, "modules": len(modules)}
    if biases:
        info["biases"] = biases
    return info


def fuse_lora(transformer, scale: float | Mapping[str, float] = 1.0) -> None:
    """Merge every loaded adapter into the base weights and drop them, leaving plain Linear
    layers (no inference overhead): W += sum_i scale_i * alpha_i / r_i * B_i A_i.

    `scale`: one scale for every adapter, or adapter name -> scale (missing names: 1.0).
    Uses peft's `set_adapters(names, weights)`, then diffusers' `fuse_lora`.
    """
    names = list(transformer.peft_config)
    if not names:
        raise ModelLoadError("fuse_lora: the transformer has no LoRA adapter loaded")
    if isinstance(scale, Mapping):
        unknown = sorted(set(scale) - set(names))
        if unknown:
            raise ModelLoadError(f"fuse_lora: scales for adapters {unknown} that are not "
                                 f"loaded (loaded: {names})")
        weights = [float(scale.get(name, 1.0)) for name in names]
    else:
        weights = [float(scale)] * len(names)
    transformer.set_adapters(names, weights)
    transformer.fuse_lora(lora_scale=1.0, adapter_names=names)
    transformer.unload_lora()
