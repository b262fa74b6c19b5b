"""`WanGenerator`: the `wan` backend (Wan 2.1 I2V + EgoX LoRA + GGA) behind `Generator`."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from egox_model.clip import Clip
from egox_model.generator.base import Generator, StepCallback
from egox_model.generator.config import GeneratorConfig
from egox_model.generator.gga import GGAAttnProcessor
from egox_model.generator.wan.config import WanConfig
from egox_model.generator.wan.loading import load_components, load_text_encoder, resolve_dtype
from egox_model.generator.wan.lora import ADAPTER, fuse_lora, load_lora
from egox_model.generator.wan.pipeline import EgoXWanPipeline, install_attn1_processor
from egox_model.generator.wan.runtime import apply_runtime
from egox_model.generator.wan.step_cache import apply_step_cache
from egox_model.generator.wan.text_cache import (PromptEncoder, TextEmbeddingCache,
                                                 text_encoder_key)
from egox_model.geometry.latent_grid import check_clip_shapes
from egox_model.geometry.tokens import token_geometry
from egox_model.output import GeneratorOutput
from egox_model.prior import PriorConfig, render_ego_prior
from egox_model.timing import stage_timer

__all__ = ["WanGenerator", "adapters_of", "build_pipeline", "load_adapters", "noise_seed",
           "resolve_device"]


def resolve_device(device: str) -> torch.device:
    """`device`; "auto": CUDA when available, else the CPU."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device)


def adapters_of(config: WanConfig) -> list[tuple[str, Path, float, str]]:
    """(peft adapter name, path, scale, setting) of every LoRA to stack: the EgoX LoRA
    (`lora_path`, adapter "egox") first, then `adapter_paths` in order."""
    found = []
    if config.lora_path:
        found.append((ADAPTER, Path(config.lora_path).expanduser(), config.lora_scale,
                      "lora_path"))
    count = len(config.adapter_paths)
    names = config.adapter_names or tuple(f"adapter_{i + 1}" for i in range(count))
    scales = config.adapter_scales or (1.0,) * count
    for i, (name, path, scale) in enumerate(zip(names, config.adapter_paths, scales)):
        found.append((name, Path(path).expanduser(), scale, f"adapter_paths[{i}]"))
    return found


def load_adapters(transformer, config: WanConfig) -> dict:
    """Load every LoRA of `config` as its own peft adapter and fuse them all with their
    scales (W += sum_i scale_i * alpha_i / r_i * B_i A_i); returns adapter name -> what was
    loaded (empty without LoRAs)."""
    loaded = {}
    for name, path, scale, setting in adapters_of(config):
        loaded[name] = {"path": str(path), "scale": scale,
                        **load_lora(transformer, path, name, what=setting)}
    if loaded:
        fuse_lora(transformer, {name: info["scale"] for name, info in loaded.items()})
    return loaded


def noise_seed(seed: int) -> int:
    """Seed of the per-step noise of `stochastic_sampling`: derived from `seed` but not equal
    to it (the start noise uses `seed`; the two streams must differ)."""
    return (seed * 1_000_003 + 0x5EED) % 2**63


def build_pipeline(config: WanConfig) -> tuple[EgoXWanPipeline, dict]:
    """Load the model directory, load + fuse the LoRAs, install GGA on attn1, enable the step
    cache, place on device.

    Returns the pipeline and a dict describing what was loaded (for diagnostics).
    """
    device = resolve_device(config.device)
    dtype = resolve_dtype(config.dtype)
    model_dir = Path(config.model_dir).expanduser()
    scheduler_options = dict(kind=config.scheduler, timesteps=config.scheduler_timesteps,
                             stochastic_sampling=config.stochastic_sampling,
                             noise_seed=noise_seed(config.seed))
    parts = load_components(model_dir, dtype=dtype, vae_dtype=resolve_dtype(config.vae_dtype),
                            flow_shift=config.flow_shift or None, text_encoder=False,
                            scheduler_options=scheduler_options)
    info: dict = {"model_dir": str(model_dir), "device": str(device), "dtype": config.dtype,
                  "scheduler": type(parts.scheduler).__name__}
    adapters = load_adapters(parts.transformer, config)
    if ADAPTER in adapters:
        info["lora"] = {k: v for k, v in adapters.pop(ADAPTER).items() if k != "scale"}
    if adapters:
        info["adapters"] = adapters
    if config.gga.strength > 0:
        install_attn1_processor(parts.transformer, GGAAttnProcessor(config.gga))
    cache = apply_step_cache(parts.transformer, config)
    if cache:
        info["cache"] = cache
    pipe = EgoXWanPipeline(parts.vae, parts.transformer, parts.scheduler,
                           image_encoder=parts.image_encoder,
                           image_processor=parts.image_processor)
    pipe.prompt_encoder = PromptEncoder(
        parts.tokenizer, lambda: load_text_encoder(model_dir, dtype),
        TextEmbeddingCache(text_encoder_key(model_dir),
                           Path(config.text_cache_dir).expanduser() if config.text_cache_dir
                           else None),
        device=device, keep_loaded=config.keep_text_encoder, offload=config.cpu_offload)
    if config.vae_tiling:
        parts.vae.enable_tiling()
    if config.cpu_offload:
        pipe.enable_model_cpu_offload(device=device)
    else:
        pipe.to(device)
    info["runtime"] = apply_runtime(pipe, config, model_dir)
    pipe.set_progress_bar_config(disable=not config.progress)
    return pipe, info


class WanGenerator(Generator):
    """EgoX with Wan 2.1 I2V: renders the geometric prior, then samples the ego video."""

    name = "wan"

    def __init__(self, config: WanConfig, prior: PriorConfig = PriorConfig(),
                 pipe: EgoXWanPipeline | None = None) -> None:
        """Loads `config.model_dir`, unless an assembled `pipe` is given (benchmarks build one
        from random weights in memory)."""
        self.config, self.prior_config = config, prior
        if pipe is None:
            self.pipe, self.loaded = build_pipeline(config)
        else:
            self.pipe, self.loaded = pipe, {"device": str(pipe.device), "dtype": config.dtype}

    @classmethod
    def from_config(cls, config: GeneratorConfig) -> WanGenerator:
        """The backend with the tree's `wan` and prior settings."""
        return cls(config.wan, config.prior)

    def generate(self, clip: Clip, *, callback: StepCallback | None = None) -> GeneratorOutput:
        """Ego frames (F, ego_K.height, ego_K.width, 3) uint8 for `clip`; callback(i, steps)
        after every denoising step. A `clip.context` (the previous clip's output of the first
        4m+1 frames) is continued from unless conditioning.previous_output is false."""
        cfg = self.config
        num_frames = clip.num_frames
        check_clip_shapes(num_frames, clip.exo_rgb.shape[1:3],
                          (clip.ego_K.height, clip.ego_K.width))
        prior = render_ego_prior(clip, self.prior_config)
        timings: dict[str, float] = {}
        geometry = None
        if cfg.gga.strength > 0:
            with stage_timer(timings, "token_geometry", num_frames):
                geometry = token_geometry(clip.exo_K, clip.exo_c2w, prior.exo_depth_m,
                                          clip.ego_K, clip.ego_c2w)
        step_end = None if callback is None else (
            lambda pipe, i, t, tensors: callback(i, cfg.num_inference_steps))
        context = clip.context if cfg.conditioning.previous_output else None
        with stage_timer(timings, "diffusion", num_frames):
            out = self.pipe(clip.exo_rgb, prior.rgb, clip.prompt, cfg.negative_prompt,
                            num_inference_steps=cfg.num_inference_steps,
                            guidance_scale=cfg.guidance_scale,
                            generator=torch.Generator().manual_seed(cfg.seed),
                            token_geometry=geometry, options=cfg.conditioning,
                            context_frames=None if context is None else context.ego_rgb,
                            callback_on_step_end=step_end)
        diagnostics = {**self.loaded, "steps": cfg.num_inference_steps, "seed": cfg.seed,
                       "guidance_scale": cfg.guidance_scale,
                       "gga": dataclasses.asdict(cfg.gga) if cfg.gga.strength > 0 else None,
                       "conditioning": dataclasses.asdict(cfg.conditioning),
                       "context_frames": 0 if context is None else context.num_frames}
        return GeneratorOutput(ego_rgb=out.frames, prior=prior, backend=self.name,
                               stamps_ns=clip.stamps_ns,
                               ms_per_frame={**prior.ms_per_frame, **timings},
                               diagnostics=diagnostics)
