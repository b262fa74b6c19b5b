"""`egox bench step`: one full denoising step (the CFG pair of transformer calls) of Wan 14B.

Random weights in the exact shape of Wan2.1-I2V-14B-480P's transformer (40 blocks, 40 heads
x 128, ffn 13824), input [1, 36, T, 56, 154] = the EgoX clip 448 x (784 | 448), GGA on all
attn1 vs diffusers' stock attention. On CUDA: all 40 blocks, 13 latent frames (28,028
tokens), bf16. On the CPU: a 2-block slice of the same shape on 1 latent frame (2,156 tokens),
bf16; its per-block time is reported, not extrapolated to the full model.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Literal, get_args

import torch

from egox_model.bench import EGO_COLS, EXO_COLS, ROWS, random_token_geometry, require_device
from egox_model.errors import InputError
from egox_model.generator.gga import GGAAttnProcessor, GGAConfig, GGAKernel
from egox_model.generator.wan.pipeline import install_attn1_processor

__all__ = ["WAN_14B_I2V", "StepBenchConfig", "format_step_bench", "random_transformer",
           "run_step_bench"]

#: transformer/config.json of Wan2.1-I2V-14B-480P-Diffusers.
WAN_14B_I2V = dict(
    patch_size=(1, 2, 2), num_attention_heads=40, attention_head_dim=128, in_channels=36,
    out_channels=16, text_dim=4096, freq_dim=256, ffn_dim=13824, num_layers=40,
    cross_attn_norm=True, qk_norm="rms_norm_across_heads", eps=1e-6, image_dim=1280,
    added_kv_proj_dim=5120, rope_max_seq_len=1024,
)
TEXT_TOKENS, IMAGE_TOKENS = 512, 257


@dataclass(frozen=True)
class StepBenchConfig:
    """layers / frames default to 40 / 13 on cuda and 2 / 1 on cpu."""

    device: Literal["cpu", "cuda"] = "cpu"
    layers: int | None = None
    frames: int | None = None
    kernel: GGAKernel = GGAConfig().kernel
    repeats: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        require_device(self.device)
        if self.kernel not in get_args(GGAKernel):
            raise InputError(f"kernel must be one of {get_args(GGAKernel)}, got {self.kernel!r}")
        for name in ("layers", "frames", "repeats"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise InputError(f"{name} must be >= 1, got {value}")

    @property
    def num_layers(self) -> int:
        """Transformer blocks built."""
        return self.layers or (40 if self.device == "cuda" else 2)

    @property
    def num_frames(self) -> int:
        """Latent frames T (13 = the default 49-frame clip)."""
        return self.frames or (13 if self.device == "cuda" else 1)


def random_transformer(num_layers: int, device: str, dtype: torch.dtype = torch.bfloat16,
                       seed: int = 0):
    """Wan 14B I2V transformer with `num_layers` blocks and N(0, 0.02) weights, built in place
    on `device` (no full-size CPU copy); fp32 where diffusers keeps fp32 modules."""
    from diffusers import WanTransformer3DModel
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    config = {**WAN_14B_I2V, "num_layers": num_layers}
    with torch.device("meta"):
        # nn.Module.to: diffusers' override warns about the fp32 modules restored just below.
        model = torch.nn.Module.to(WanTransformer3DModel(**config), dtype)
        for name, module in model.named_modules():
            if set(name.split(".")) & set(model._keep_in_fp32_modules):
                module.float()
    model.to_empty(device=device)
    torch.manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if name.endswith("bias"):
                param.zero_()
            elif param.ndim == 1:  # norm scales
                param.fill_(1.0)
            else:
                param.normal_(0.0, 0.02)
    model.rope = WanRotaryPosEmbed(config["attention_head_dim"], config["patch_size"],
                                   config["rope_max_seq_len"]).to(device)
    return model.eval().requires_grad_(False)


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def run_step_bench(config: StepBenchConfig) -> dict:
    """Milliseconds (median of `repeats`; on CUDA after one warm-up) of one CFG denoising step
    with GGA off (stock attention) and on, and the CUDA peak memory of each."""
    from diffusers.models.transformers.transformer_wan import WanAttnProcessor

    device, dtype = config.device, torch.bfloat16
    model = random_transformer(config.num_layers, device, dtype, config.seed)
    gen = torch.Generator().manual_seed(config.seed)
    frames = config.num_frames
    hidden = torch.randn(1, 36, frames, 2 * ROWS, 2 * (EXO_COLS + EGO_COLS), generator=gen)
    text = torch.randn(2, TEXT_TOKENS, WAN_14B_I2V["text_dim"], generator=gen)
    image = torch.randn(1, IMAGE_TOKENS, WAN_14B_I2V["image_dim"], generator=gen)
    hidden, text, image = (x.to(device, dtype) for x in (hidden, text, image))
    timestep = torch.tensor([900.0], device=device)
    gga = GGAAttnProcessor(GGAConfig(strength=3.0, kernel=config.kernel))
    gga.set_geometry(random_token_geometry(frames, gen).to(device))

    def step() -> None:
        with torch.no_grad():
            for prompt in (text[:1], text[1:]):  # conditional + unconditional = one CFG step
                model(hidden, timestep, prompt, image, return_dict=False)

    result = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
              "dtype": "bfloat16", "layers": config.num_layers, "frames": frames,
              "tokens": frames * ROWS * (EXO_COLS + EGO_COLS), "kernel": config.kernel,
              "params_b": round(sum(p.numel() for p in model.parameters()) / 1e9, 3)}
    for label, processor in (("off", WanAttnProcessor()), ("on", gga)):
        install_attn1_processor(model, processor)
        if device == "cuda":
            step()  # warm-up: allocator, kernel selection, torch.compile of the GGA kernel
            torch.cuda.reset_peak_memory_stats()
        times = []
        for _ in range(config.repeats):
            _sync(device)
            start = time.perf_counter()
            step()
            _sync(device)
            times.append(1e3 * (time.perf_counter() - start))
        result[f"gga_{label}_ms"] = round(statistics.median(times), 1)
        result[f"gga_{label}_peak_mb"] = (round(torch.cuda.max_memory_allocated() / 2 ** 20)
                                          if device == "cuda" else None)
    result["gga_ratio"] = round(result["gga_on_ms"] / result["gga_off_ms"], 3)
    # Per block, including the (small) embedding and output head share.
    result["ms_per_layer_gga_on"] = round(result["gga_on_ms"] / config.num_layers, 1)
    return result


def format_step_bench(r: dict) -> str:
    """Human-readable summary."""
    return "\n".join([
        f"Wan 14B I2V denoising step (CFG pair), {r['layers']} of 40 blocks "
        f"({r['params_b']} B params), {r['tokens']} tokens ({r['frames']} latent frames), "
        f"{r['dtype']} on {r['device']}",
        f"GGA off (stock attention): {r['gga_off_ms']:>10.1f} ms"
        + (f", peak {r['gga_off_peak_mb']} MiB" if r["gga_off_peak_mb"] else ""),
        f"GGA on  ({r['kernel']:<7}):         {r['gga_on_ms']:>10.1f} ms"
        + (f", peak {r['gga_on_peak_mb']} MiB" if r["gga_on_peak_mb"] else ""),
        f"GGA on / off: {r['gga_ratio']:.3f}x; {r['ms_per_layer_gga_on']:.1f} ms per block",
    ])
