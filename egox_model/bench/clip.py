"""`egox bench clip`: one whole clip through `WanGenerator`, stage by stage, per schedule.

Random weights in the real component shapes (Wan2.1-I2V-14B-480P: UMT5-XXL text encoder,
the Wan VAE, CLIP ViT-H/14, the 14B transformer) assembled in memory, or the tiny test model
("tiny", the CPU default). The clip is the default 49 frames of 448 x (784 | 448) for "14b".
Stages are wall times of each module's calls (forward hooks, CUDA-synchronised): prior
rendering and token geometry (CPU), text encoding, VAE encoding, CLIP, the denoising steps,
VAE decoding; "other" is the rest (scheduler, copies).

Schedules: "50x2" = 50 steps with CFG (two transformer calls per step), "4x1" = 4 steps without
CFG (guidance 1: a step-distilled LoRA's schedule). With `measured_steps` set, a schedule
longer than that runs `measured_steps` steps and its step stage is scaled to the full count
(marked "computed" in the output).
"""
from __future__ import annotations

import contextlib
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from egox_model.bench import require_device
from egox_model.bench.step import random_transformer
from egox_model.errors import InputError
from egox_model.generator.wan.config import PRECISIONS, RUNTIMES, WanConfig

__all__ = ["ClipBenchConfig", "format_clip_bench", "run_clip_bench"]

#: UMT5-XXL (Wan's text encoder) and CLIP ViT-H/14 (Wan 2.1 I2V's image encoder).
UMT5_XXL = dict(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_layers=24,
                num_heads=64, relative_attention_num_buckets=32, feed_forward_proj="gated-gelu",
                pad_token_id=0, eos_token_id=1)
CLIP_VIT_H14 = dict(hidden_size=1280, intermediate_size=5120, num_hidden_layers=32,
                    num_attention_heads=16, image_size=224, patch_size=14, projection_dim=1024,
                    hidden_act="gelu")
#: (frames, exo (H, W), ego (H, W)) of the clip per model size.
CLIP_SHAPES = {"14b": (49, (448, 784), (448, 448)), "tiny": (5, (32, 48), (32, 32))}


@dataclass(frozen=True)
class ClipBenchConfig:
    """size "14b" needs CUDA; "tiny" runs anywhere. schedules: "STEPSxCALLS" entries."""

    device: Literal["cpu", "cuda"] = "cpu"
    size: Literal["14b", "tiny"] = "tiny"
    layers: int = 40
    runtime: str = "eager"
    precision: str = "bf16"
    schedules: tuple[str, ...] = ("50x2", "4x1")
    measured_steps: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        require_device(self.device)
        if self.size not in CLIP_SHAPES:
            raise InputError(f"size must be one of {tuple(CLIP_SHAPES)}, got {self.size!r}")
        if self.size == "14b" and self.device != "cuda":
            raise InputError("size '14b' needs --device cuda (on the CPU use --size tiny)")
        if self.runtime not in RUNTIMES or self.precision not in PRECISIONS:
            raise InputError(f"runtime must be one of {RUNTIMES} and precision one of "
                             f"{PRECISIONS}, got {self.runtime!r} / {self.precision!r}")
        for schedule in self.schedules:
            steps, _, calls = schedule.partition("x")
            if not (steps.isdigit() and int(steps) > 0 and calls in ("1", "2")):
                raise InputError(f"schedule {schedule!r} must be STEPSx1 or STEPSx2, e.g. 4x1")
        if self.layers < 1 or self.measured_steps < 0:
            raise InputError("layers must be >= 1 and measured_steps >= 0")


def _components(size: str, layers: int, device: str, tokenizer_dir: Path) -> dict:
    """Random-weight modules of the pipeline, built on `device`."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler
    from transformers import (AutoTokenizer, CLIPImageProcessor, CLIPVisionConfig,
                              CLIPVisionModel, UMT5Config, UMT5EncoderModel)

    from egox_model.generator.wan import tiny

    tiny.save_tokenizer(tokenizer_dir)
    big = size == "14b"
    with torch.device(device):
        vae = AutoencoderKLWan(**({} if big else tiny.TINY_VAE))
        text = UMT5EncoderModel(UMT5Config(**(UMT5_XXL if big else tiny.TINY_TEXT_ENCODER)))
        image = CLIPVisionModel(CLIPVisionConfig(
            **(CLIP_VIT_H14 if big else tiny.TINY_IMAGE_ENCODER)))
    if big:
        transformer = random_transformer(layers, device, torch.bfloat16)
    else:
        from diffusers import WanTransformer3DModel
        with torch.device(device):
            transformer = WanTransformer3DModel(**tiny.TINY_TRANSFORMER).to(torch.bfloat16)
    crop = CLIP_VIT_H14["image_size"] if big else tiny.TINY_IMAGE_ENCODER["image_size"]
    return dict(vae=vae.eval(), transformer=transformer.eval(),
                text_encoder=text.to(torch.bfloat16).eval(), image_encoder=image.eval(),
                image_processor=CLIPImageProcessor(crop_size=crop, size={"shortest_edge": crop}),
                tokenizer=AutoTokenizer.from_pretrained(str(tokenizer_dir)),
                scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0))


@contextlib.contextmanager
def _module_timer(modules: dict[str, torch.nn.Module], device: str, seconds: dict):
    """Accumulate each module's forward wall time (synchronised) into seconds[name]."""
    handles, starts = [], {}

    def sync() -> None:
        if device == "cuda":
            torch.cuda.synchronize()

    for name, module in modules.items():
        def pre(_module, _args, name=name):
            sync()
            starts[name] = time.perf_counter()

        def post(_module, _args, _out, name=name):
            sync()
            seconds[name] = seconds.get(name, 0.0) + time.perf_counter() - starts[name]
        handles += [module.register_forward_pre_hook(pre),
                    module.register_forward_hook(post)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _generator(config: ClipBenchConfig, parts: dict):
    """A WanGenerator around the in-memory pipeline, runtime and precision applied."""
    from egox_model.generator.wan.backend import WanGenerator
    from egox_model.generator.wan.pipeline import EgoXWanPipeline
    from egox_model.generator.wan.runtime import apply_runtime
    from egox_model.generator.wan.text_cache import PromptEncoder, TextEmbeddingCache

    wan = WanConfig(device=config.device, progress=False, runtime=config.runtime,
                    precision=config.precision, keep_text_encoder=True)
    pipe = EgoXWanPipeline(parts["vae"], parts["transformer"], parts["scheduler"],
                           image_encoder=parts["image_encoder"],
                           image_processor=parts["image_processor"])
    pipe.prompt_encoder = PromptEncoder(parts["tokenizer"], lambda: parts["text_encoder"],
                                        TextEmbeddingCache("bench"), device=config.device,
                                        keep_loaded=True)
    pipe.to(config.device)
    pipe.set_progress_bar_config(disable=True)
    apply_runtime(pipe, wan, Path("."))
    return WanGenerator(wan, pipe=pipe)


def run_clip_bench(config: ClipBenchConfig) -> dict:
    """Seconds per stage and in total for each schedule; CUDA peak memory per schedule.

    Each schedule runs twice on the same clip with a new prompt each time (so text encoding
    is timed, not served from the cache); the second run is reported (the first warms up,
    and compiles under runtime "compile").
    """
    import dataclasses

    from egox_model.generator.wan.tiny import TINY_TRANSFORMER, tiny_clip

    device = config.device
    frames, exo_hw, ego_hw = CLIP_SHAPES[config.size]
    clip = tiny_clip(frames, exo_hw, ego_hw, seed=config.seed)
    with tempfile.TemporaryDirectory() as tmp:
        parts = _components(config.size, config.layers, device, Path(tmp) / "tokenizer")
    generator = _generator(config, parts)
    modules = {"text_encode": parts["text_encoder"], "vae_encode": parts["vae"].encoder,
               "clip_image": parts["image_encoder"], "steps": generator.pipe.transformer,
               "vae_decode": parts["vae"].decoder}
    result = {"device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
              "size": config.size, "frames": frames,
              "layers": config.layers if config.size == "14b" else TINY_TRANSFORMER["num_layers"],
              "exo_hw": list(exo_hw), "ego_hw": list(ego_hw), "runtime": config.runtime,
              "precision": config.precision, "schedules": []}
    for index, schedule in enumerate(config.schedules):
        steps, calls = (int(x) for x in schedule.split("x"))
        run_steps = min(steps, config.measured_steps) if config.measured_steps else steps
        generator.config = dataclasses.replace(
            generator.config, num_inference_steps=run_steps,
            guidance_scale=5.0 if calls == 2 else 1.0)
        for attempt in range(2):
            clip = dataclasses.replace(clip, prompt=f"a robot arm moves the cup {index} "
                                                    f"{attempt}")
            if device == "cuda":
                torch.cuda.synchronize()
                torch.cuda.reset_peak_memory_stats()
            seconds: dict[str, float] = {}
            start = time.perf_counter()
            with _module_timer(modules, device, seconds):
                output = generator.generate(clip)
            total = time.perf_counter() - start
        scale = steps / run_steps
        stages = {"prior_render": output.ms_per_frame.get("render", 0.0) * frames / 1e3,
                  "token_geometry": output.ms_per_frame.get("token_geometry", 0.0)
                  * frames / 1e3,
                  **seconds}
        stages["other"] = max(0.0, total - sum(stages.values()))
        stages["steps"] = seconds["steps"] * scale
        result["schedules"].append({
            "schedule": schedule, "steps": steps, "calls_per_step": calls,
            "computed": run_steps != steps, "measured_steps": run_steps,
            "stages_s": {k: round(v, 3) for k, v in stages.items()},
            "total_s": round(sum(stages.values()), 2),
            "peak_gpu_mb": (round(torch.cuda.max_memory_allocated() / 2 ** 20)
                            if device == "cuda" else None)})
    return result


def format_clip_bench(r: dict) -> str:
    """Human-readable table: one column per schedule."""
    rows = r["schedules"]
    lines = [f"one clip of {r['frames']} frames, exo {r['exo_hw'][0]}x{r['exo_hw'][1]} | ego "
             f"{r['ego_hw'][0]}x{r['ego_hw'][1]}, Wan {r['size']} ({r['layers']} blocks) random "
             f"weights, runtime {r['runtime']}, {r['precision']}, on {r['device']}",
             f"{'stage (s)':<16}" + "".join(f"{row['schedule']:>12}" for row in rows)]
    for stage in rows[0]["stages_s"]:
        lines.append(f"{stage:<16}" + "".join(f"{row['stages_s'][stage]:>12.3f}"
                                              for row in rows))
    lines.append(f"{'total':<16}" + "".join(f"{row['total_s']:>12.2f}" for row in rows))
    if any(row["peak_gpu_mb"] for row in rows):
        lines.append(f"{'peak GPU MiB':<16}" + "".join(f"{row['peak_gpu_mb']:>12}"
                                                       for row in rows))
    for row in rows:
        if row["computed"]:
            lines.append(f"{row['schedule']}: steps computed from {row['measured_steps']} "
                         f"measured steps x {row['steps'] / row['measured_steps']:g}")
    lines.append(f"baseline: the {rows[0]['schedule']} schedule; "
                 + ", ".join(f"{row['schedule']} = {row['total_s'] / rows[0]['total_s']:.3f}x"
                             for row in rows[1:]))
    return "\n".join(lines)
