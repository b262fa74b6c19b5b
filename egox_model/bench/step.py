"""`egox bench step`: one full denoising step (the CFG pair of transformer calls) of Wan 14B.

Random weights in the exact shape of Wan2.1-I2V-14B-480P's transformer (40 blocks, 40 heads
x 128, ffn 13824), input [1, 36, T, 56, 154] = the EgoX clip 448 x (784 | 448), GGA on all
attn1 vs diffusers' stock attention. On CUDA: all 40 blocks, 13 latent frames (28,028
tokens), bf16. On the CPU: a 2-block slice of the same shape on 1 latent frame (2,156 tokens),
bf16; its per-block time is reported, not extrapolated to the full model.

Each runtime (eager, torch.compile, TensorRT) and precision (bf16, FP8) is timed side by side
in one run, as a ratio to eager bf16 and to the compute floor (`floor.py`: FLOPs over the bf16
matmul rate measured in the same run). Combinations that cannot run here are listed with why.
"""
from __future__ import annotations

import statistics
import sys
import time
from dataclasses import dataclass
from typing import Literal, get_args

import torch

from egox_model.bench import EGO_COLS, EXO_COLS, ROWS, random_token_geometry, require_device
from egox_model.bench.floor import matmul_tflops, wan_forward_flops
from egox_model.errors import InputError
from egox_model.generator.gga import GGAAttnProcessor, GGAConfig, GGAKernel
from egox_model.generator.wan.config import PRECISIONS, RUNTIMES
from egox_model.generator.wan.pipeline import install_attn1_processor
from egox_model.generator.wan.runtime import FP8_MIN_CAPABILITY, compile_transformer, quantize_fp8

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
    """layers / frames default to 40 / 13 on cuda and 2 / 1 on cpu; every combination of
    `runtimes` x `precisions` is timed with GGA off and on."""

    device: Literal["cpu", "cuda"] = "cpu"
    layers: int | None = None
    frames: int | None = None
    kernel: GGAKernel = GGAConfig().kernel
    runtimes: tuple[str, ...] = ("eager",)
    precisions: tuple[str, ...] = ("bf16",)
    repeats: int = 1
    seed: int = 0

    def __post_init__(self) -> None:
        require_device(self.device)
        if self.kernel not in get_args(GGAKernel):
            raise InputError(f"kernel must be one of {get_args(GGAKernel)}, got {self.kernel!r}")
        for name, allowed in (("runtimes", RUNTIMES), ("precisions", PRECISIONS)):
            values = getattr(self, name)
            if not values or set(values) - set(allowed):
                raise InputError(f"{name} must be a non-empty subset of {allowed}, got "
                                 f"{','.join(values)!r}")
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


def _unavailable(runtime: str, precision: str, device: str) -> str | None:
    """Why this combination cannot run here, or None."""
    if runtime == "tensorrt":
        try:
            import tensorrt  # noqa: F401
        except ImportError:
            return "tensorrt is not installed (docs/tensorrt.md)"
        return "not timed by this benchmark: it needs an engine of the model built by `egox " \
            "export-trt` (docs/tensorrt.md)"
    if precision == "fp8":
        if device != "cuda" or torch.cuda.get_device_capability() < FP8_MIN_CAPABILITY:
            return "FP8 needs a CUDA GPU with compute capability >= 8.9"
        try:
            import torchao  # noqa: F401
        except ImportError:
            return "torchao is not installed (pip install torchao==0.18.0)"
    return None


def _timed_ms(fn, device: str, repeats: int) -> float:
    """Median milliseconds of `repeats` calls of fn()."""
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times)


def run_step_bench(config: StepBenchConfig) -> dict:
    """Milliseconds (median of `repeats`, after one warm-up call that also compiles) of one
    CFG denoising step for each runtime x precision with GGA off (stock attention) and on;
    each beside eager bf16 and the compute floor measured in the same run; for FP8 the
    relative L2 error of one forward's output against bf16 (GGA on)."""
    from diffusers.models.transformers.transformer_wan import WanAttnProcessor

    device, dtype = config.device, torch.bfloat16
    gen = torch.Generator().manual_seed(config.seed)
    frames = config.num_frames
    tokens = frames * ROWS * (EXO_COLS + EGO_COLS)
    hidden = torch.randn(1, 36, frames, 2 * ROWS, 2 * (EXO_COLS + EGO_COLS), generator=gen)
    text = torch.randn(2, TEXT_TOKENS, WAN_14B_I2V["text_dim"], generator=gen)
    image = torch.randn(1, IMAGE_TOKENS, WAN_14B_I2V["image_dim"], generator=gen)
    hidden, text, image = (x.to(device, dtype) for x in (hidden, text, image))
    timestep = torch.tensor([900.0], device=device)
    gga = GGAAttnProcessor(GGAConfig(strength=3.0, kernel=config.kernel))
    gga.set_geometry(random_token_geometry(frames, gen).to(device))

    tflops = matmul_tflops(device)
    flops = wan_forward_flops({**WAN_14B_I2V, "num_layers": config.num_layers}, tokens,
                              TEXT_TOKENS, IMAGE_TOKENS)
    floor_ms = 2 * flops["total"] / (tflops * 1e12) * 1e3  # CFG: two forwards
    result = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
              "dtype": "bfloat16", "layers": config.num_layers, "frames": frames,
              "tokens": tokens, "kernel": config.kernel, "repeats": config.repeats,
              "matmul_tflops": round(tflops, 1),
              "pflop_per_forward": flops["total"] / 1e15,
              "pflop_linear": flops["linear"] / 1e15,
              "pflop_attention": flops["attention"] / 1e15,
              "floor_ms": round(floor_ms, 1), "rows": []}
    reference = None
    for runtime in config.runtimes:
        for precision in config.precisions:
            row: dict = {"runtime": runtime, "precision": precision}
            result["rows"].append(row)
            row["skipped"] = _unavailable(runtime, precision, device)
            if row["skipped"]:
                continue
            model = random_transformer(config.num_layers, device, dtype, config.seed)
            result.setdefault("params_b", round(sum(p.numel() for p in model.parameters())
                                                / 1e9, 3))
            if precision == "fp8":
                quantize_fp8(model)
            if runtime == "compile":
                compile_transformer(model)

            def forward(prompt: torch.Tensor) -> torch.Tensor:
                with torch.no_grad():
                    return model(hidden, timestep, prompt, image, return_dict=False)[0]

            def step() -> None:
                for prompt in (text[:1], text[1:]):  # conditional + unconditional
                    forward(prompt)

            for label, processor in (("off", WanAttnProcessor()), ("on", gga)):
                install_attn1_processor(model, processor)
                start = time.perf_counter()
                step()  # warm-up: allocator, kernel selection, compilation
                _sync(device)
                row[f"gga_{label}_warmup_s"] = round(time.perf_counter() - start, 1)
                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                row[f"gga_{label}_ms"] = round(_timed_ms(step, device, config.repeats), 1)
                peak = torch.cuda.max_memory_allocated() if device == "cuda" else None
                row[f"gga_{label}_peak_mb"] = peak and round(peak / 2 ** 20)
            out = forward(text[:1]).float()
            if reference is None and precision == "bf16":
                reference = out
            elif reference is not None:
                row["rel_error_vs_bf16"] = round(
                    ((out - reference).norm() / reference.norm()).item(), 4)
            row["gga_ratio"] = round(row["gga_on_ms"] / row["gga_off_ms"], 3)
            row["ms_per_block_gga_on"] = round(row["gga_on_ms"] / config.num_layers, 1)
            row["vs_floor"] = round(row["gga_on_ms"] / floor_ms, 2)
            print(f"[bench step] {row}", file=sys.stderr, flush=True)
            model = None  # free it before the next runtime is built
            if device == "cuda":
                torch.cuda.empty_cache()
    eager = next((r for r in result["rows"] if r["runtime"] == "eager"
                  and r["precision"] == "bf16" and not r["skipped"]), None)
    for row in result["rows"]:
        if eager and not row["skipped"]:
            row["vs_eager"] = round(row["gga_on_ms"] / eager["gga_on_ms"], 3)
    return result


def format_step_bench(r: dict) -> str:
    """Human-readable table."""
    lines = [
        f"Wan 14B I2V denoising step (CFG pair), {r['layers']} of 40 blocks, {r['tokens']} "
        f"tokens ({r['frames']} latent frames), bf16 on {r['device']}, GGA kernel "
        f"{r['kernel']}",
        f"floor: {2 * r['pflop_per_forward']:.4g} PFLOP per CFG pair "
        f"({r['pflop_linear']:.4g} linear + {r['pflop_attention']:.4g} attention per forward) "
        f"at {r['matmul_tflops']:.0f} TFLOP/s measured bf16 matmul = {r['floor_ms']:.1f} ms",
        f"{'runtime':<9}{'prec':<6}{'GGA off ms':>11}{'GGA on ms':>11}{'on/off':>8}"
        f"{'vs eager':>9}{'vs floor':>9}{'ms/block':>9}{'peak MiB':>10}  notes",
    ]
    for row in r["rows"]:
        if row["skipped"]:
            lines.append(f"{row['runtime']:<9}{row['precision']:<6}  skipped: {row['skipped']}")
            continue
        notes = f"warm-up {row['gga_on_warmup_s']} s"
        if "rel_error_vs_bf16" in row:
            notes += f"; rel. error vs bf16 {row['rel_error_vs_bf16']}"
        lines.append(
            f"{row['runtime']:<9}{row['precision']:<6}{row['gga_off_ms']:>11.1f}"
            f"{row['gga_on_ms']:>11.1f}{row['gga_ratio']:>8.3f}{row.get('vs_eager', 0):>9.3f}"
            f"{row['vs_floor']:>9.2f}{row['ms_per_block_gga_on']:>9.1f}"
            f"{row['gga_on_peak_mb'] or '-':>10}  {notes}")
    if r["layers"] != 40:
        lines.append(f"(a {r['layers']}-block slice; a 40-block step is computed, not measured: "
                     f"ms/block x 40)")
    return "\n".join(lines)
