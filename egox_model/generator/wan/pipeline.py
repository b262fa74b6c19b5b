"""`EgoXWanPipeline`: Wan 2.1 I2V sampling with EgoX's clean-exo-latent conditioning.

check_inputs -> encode_prompt (T5, 512 tokens) -> encode_image (CLIP) -> prepare_latents
([x0 | z_T], condition [mask | x0 | p0]) -> denoising loop (CFG, flow matching, exo half kept
clean) -> decode the ego half only. Structure follows diffusers' WanImageToVideoPipeline.

Video continuation (`context_frames`, the previous clip's output of the first 4m+1 frames):
their VAE latent c replaces the ego half's first m+1 latent frames, re-noised to each step's
sigma before the transformer sees it ((1 - sigma) c + sigma * its start noise) and exactly c
after the last step; in the condition those latent frames carry c instead of the prior latent
and the mask marks them as given. Wan's VAE is causal in time, so the decoded first 4m+1
frames are the VAE round trip of the context frames (docs/wan.md, "Long episodes").
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput

from egox_model.errors import InputError
from egox_model.generator.wan.conditioning import (
    build_condition, clip_image_states, condition_mask, decode_latents, encode_video,
    frames_to_video_tensor, noisy_exo, video_tensor_to_frames)
from egox_model.generator.wan.config import ConditioningOptions
from egox_model.generator.wan.step_cache import reset_step_cache
from egox_model.generator.wan.text_cache import PromptEncoder
from egox_model.geometry.latent_grid import (PIXELS_PER_TOKEN, VAE_SPACE, check_clip_shapes,
                                             check_context_frames, latent_frames)

__all__ = ["EgoXWanPipeline", "EgoXWanPipelineOutput", "StepEndCallback",
           "install_attn1_processor"]

#: callback(pipe, step_index, timestep, tensors) after each step; tensors holds "latents"
#: (1, 16, T, h, w_x + w_e), the full-width state, and "exo_latents" x0 (1, 16, T, h, w_x).
StepEndCallback = Callable[["EgoXWanPipeline", int, torch.Tensor, dict], None]


@dataclass
class EgoXWanPipelineOutput(BaseOutput):
    """frames (F, H, W_ego, 3) uint8; latents (1, 16, T, H/8, W_ego/8): the final ego latents."""

    frames: np.ndarray
    latents: torch.Tensor


def install_attn1_processor(transformer, processor) -> None:
    """Put one `processor` instance on every block's attn1; attn2 keeps its own processor."""
    processors = {name: (processor if name.endswith("attn1.processor") else current)
                  for name, current in transformer.attn_processors.items()}
    transformer.set_attn_processor(processors)


class EgoXWanPipeline(DiffusionPipeline):
    """Exo video + ego prior video -> ego video with Wan 2.1 I2V (LoRA fused beforehand).

    The text encoder lives in `prompt_encoder` (cached, unloadable), not among the modules.
    """

    model_cpu_offload_seq = "image_encoder->transformer->vae"
    _optional_components = ["image_encoder", "image_processor"]

    def __init__(self, vae, transformer, scheduler, image_encoder=None,
                 image_processor=None) -> None:
        super().__init__()
        self.register_modules(vae=vae, transformer=transformer, scheduler=scheduler,
                              image_encoder=image_encoder, image_processor=image_processor)
        self.prompt_encoder: PromptEncoder | None = None

    # 1. Inputs ---------------------------------------------------------------------------
    def check_inputs(self, exo_frames: np.ndarray, prior_frames: np.ndarray, prompt: str,
                     negative_prompt: str, num_inference_steps: int,
                     guidance_scale: float, context_frames: np.ndarray | None = None) -> None:
        """Shapes (F, H, W, 3) uint8, F = 4k+1, sizes multiples of 16, equal heights; context
        (4m+1, H, W_ego, 3) with 4m+1 < F."""
        named = [("exo_frames", exo_frames), ("prior_frames", prior_frames)]
        if context_frames is not None:
            named.append(("context_frames", context_frames))
        for name, frames in named:
            if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
                raise InputError(f"{name} must be (F, H, W, 3) uint8 RGB, got shape "
                                 f"{frames.shape} dtype {frames.dtype}")
        if len(prior_frames) != len(exo_frames):
            raise InputError(f"prior_frames has {len(prior_frames)} frames but exo_frames has "
                             f"{len(exo_frames)}; render one prior frame per exo frame")
        check_clip_shapes(len(exo_frames), exo_frames.shape[1:3], prior_frames.shape[1:3])
        if context_frames is not None:
            check_context_frames(len(context_frames), len(exo_frames))
            if context_frames.shape[1:3] != prior_frames.shape[1:3]:
                raise InputError(f"context_frames are {context_frames.shape[1:3]} (HxW) but the "
                                 f"ego frames are {prior_frames.shape[1:3]}")
        rope_len = self.transformer.config.rope_max_seq_len
        height, width = exo_frames.shape[1], exo_frames.shape[2] + prior_frames.shape[2]
        patches = max(height, width) // PIXELS_PER_TOKEN
        if patches > rope_len:
            raise InputError(f"exo | ego frames are {height}x{width} (HxW): {patches} patches "
                             f"along one axis, but the transformer's rope_max_seq_len is "
                             f"{rope_len}; use smaller frames or a model with longer RoPE")
        if not isinstance(prompt, str) or not isinstance(negative_prompt, str):
            raise InputError(f"prompt and negative_prompt must be str, got "
                             f"{type(prompt).__name__} and {type(negative_prompt).__name__}")
        if num_inference_steps < 1:
            raise InputError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if guidance_scale < 1:
            raise InputError(f"guidance_scale must be >= 1, got {guidance_scale}")
        if self.prompt_encoder is None:
            raise InputError("pipeline.prompt_encoder is not set; build the pipeline with "
                             "WanGenerator or assign a PromptEncoder")

    # 2. Text and image embeddings -------------------------------------------------------------
    def encode_prompt(self, prompt: str, negative_prompt: str, do_cfg: bool
                      ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(1, 512, D) positive and (with CFG) negative UMT5 embeddings in the transformer dtype."""
        prompts = [prompt, negative_prompt] if do_cfg else [prompt]
        embeds = self.prompt_encoder.encode(prompts).to(self._execution_device,
                                                        self.transformer.dtype)
        return embeds[:1], (embeds[1:] if do_cfg else None)

    def encode_image(self, image: np.ndarray) -> torch.Tensor | None:
        """CLIP penultimate hidden states (1, 257, 1280) of an (H, W, 3) uint8 image; None for
        transformers without image conditioning (image_dim None)."""
        if self.transformer.config.image_dim is None:
            return None
        return clip_image_states(self.image_encoder, self.image_processor, image,
                                 self._execution_device, self.transformer.dtype)

    # 3. Latents ----------------------------------------------------------------------------
    def prepare_latents(self, exo_frames: np.ndarray, prior_frames: np.ndarray,
                        options: ConditioningOptions, generator: torch.Generator | None,
                        context_frames: np.ndarray | None = None
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                                   torch.Tensor | None]:
        """Returns (latents, condition, x0, exo_noise, context), float32 on the execution
        device.

        latents (1, 16, T, h, w_x + w_e) = [x0 | z_T], z_T ~ N(0, I) drawn on the CPU from
        `generator` (same seed -> same video on any device); condition (1, 20, T, h, w) =
        [mask | x0 | p0]; exo_noise: the noise of the noisy-exo ablation; context: the latent
        (1, 16, m+1, h, w_e) of `context_frames` (None without), which also takes the place
        of p0 in the condition for those latent frames, marked 1 in the mask.
        """
        device = self._execution_device
        x0 = encode_video(self.vae, frames_to_video_tensor(exo_frames), device)
        if options.zero_prior:
            p0_shape = x0.shape[:-1] + (prior_frames.shape[2] // VAE_SPACE,)
            p0 = torch.zeros(p0_shape, device=device)
        else:
            p0 = encode_video(self.vae, frames_to_video_tensor(prior_frames), device)
        noise = torch.randn(x0.shape[:-1] + (x0.shape[-1] + p0.shape[-1],),
                            generator=generator, dtype=torch.float32).to(device)
        exo_width = x0.shape[-1]
        latents = torch.cat([x0, noise[..., exo_width:]], dim=-1)
        mask = condition_mask(len(exo_frames), x0.shape[-2], exo_width, p0.shape[-1],
                              options.mask_layout, device=device)
        context = None
        if context_frames is not None:
            context = encode_video(self.vae, frames_to_video_tensor(context_frames), device)
            given = context.shape[2]
            p0 = torch.cat([context, p0[:, :, given:]], dim=2)
            mask[:, :, :given, :, exo_width:] = 1.0
        return (latents, build_condition(x0, p0, mask), x0, noise[..., :exo_width],
                context)

    def clip_image(self, exo_frames: np.ndarray, prior_frames: np.ndarray,
                   latents: torch.Tensor, options: ConditioningOptions,
                   context_frames: np.ndarray | None = None) -> np.ndarray:
        """The (H, W_x + W_e, 3) uint8 image CLIP sees: see WanConfig.clip_image; 'prior'
        shows the first context frame instead of the prior when the clip continues one."""
        if options.clip_image == "official":
            first = decode_latents(self.vae, latents[:, :, :1], self._execution_device)
            return video_tensor_to_frames(first)[0]
        if context_frames is not None:
            ego = context_frames[0]
        else:
            ego = np.zeros_like(prior_frames[0]) if options.zero_prior else prior_frames[0]
        return np.concatenate([exo_frames[0], ego], axis=1)

    def cache_context(self, name: str):
        """diffusers' cache context around one transformer call ("cond" / "uncond"): step
        caches (step_cache.py) keep their state per name. A no-op without a cache."""
        if getattr(self.transformer, "is_cache_enabled", False):
            return self.transformer.cache_context(name)
        return contextlib.nullcontext()

    @property
    def attn1_processors(self) -> list:
        """The distinct processors on the blocks' attn1 that take token geometry (GGA)."""
        found = {id(p): p for name, p in self.transformer.attn_processors.items()
                 if name.endswith("attn1.processor") and hasattr(p, "set_geometry")}
        return list(found.values())

    # 4. Sampling ---------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, exo_frames: np.ndarray, prior_frames: np.ndarray, prompt: str = "",
                 negative_prompt: str = "", *, num_inference_steps: int = 50,
                 guidance_scale: float = 5.0, generator: torch.Generator | None = None,
                 token_geometry=None, options: ConditioningOptions = ConditioningOptions(),
                 context_frames: np.ndarray | None = None,
                 callback_on_step_end: StepEndCallback | None = None) -> EgoXWanPipelineOutput:
        """Sample the ego video.

        exo_frames (F, H, W_x, 3) and prior_frames (F, H, W_e, 3) uint8 RGB; token_geometry
        (TokenGeometry of the clip) is handed to GGA processors on attn1, if installed;
        context_frames (4m+1, H, W_e, 3) uint8: the previous clip's output of this clip's
        first 4m+1 frames, continued from (module docstring).
        """
        # 1. Check inputs
        exo_frames, prior_frames = np.asarray(exo_frames), np.asarray(prior_frames)
        if context_frames is not None:
            context_frames = np.asarray(context_frames)
        self.check_inputs(exo_frames, prior_frames, prompt, negative_prompt,
                          num_inference_steps, guidance_scale, context_frames)
        device = self._execution_device
        do_cfg = guidance_scale > 1.0

        # 2. Text embeddings (cached; the text encoder may be unloaded afterwards)
        prompt_embeds, negative_embeds = self.encode_prompt(prompt, negative_prompt, do_cfg)

        # 3. Latents, condition and the CLIP image
        latents, condition, x0, exo_noise, context = self.prepare_latents(
            exo_frames, prior_frames, options, generator, context_frames)
        image_embeds = self.encode_image(self.clip_image(exo_frames, prior_frames, latents,
                                                         options, context_frames))
        exo_width = x0.shape[-1]
        dtype = self.transformer.dtype
        given = 0 if context is None else latent_frames(len(context_frames))
        context_noise = latents[:, :, :given, :, exo_width:].clone()

        # 4. Timesteps and GGA geometry
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        sigmas = self.scheduler.sigmas.tolist()
        for processor in self.attn1_processors:
            processor.set_geometry(None if token_geometry is None else token_geometry.to(device))

        # 5. Denoising loop: only the ego half moves; the exo half is x0 after every step
        reset_step_cache(self.transformer)   # nothing cached from an earlier clip
        try:
            with self.progress_bar(total=len(timesteps)) as progress_bar:
                for i, t in enumerate(timesteps):
                    if given:                      # the context, at this step's noise level
                        latents[:, :, :given, :, exo_width:] = (
                            (1.0 - sigmas[i]) * context + sigmas[i] * context_noise)
                    model_input = latents
                    if options.noisy_exo:
                        model_input = torch.cat([noisy_exo(x0, exo_noise, sigmas[i]),
                                                 latents[..., exo_width:]], dim=-1)
                    model_input = torch.cat([model_input, condition], dim=1).to(dtype)
                    timestep = t.expand(model_input.shape[0])
                    with self.cache_context("cond"):
                        noise_pred = self.transformer(
                            hidden_states=model_input, timestep=timestep,
                            encoder_hidden_states=prompt_embeds,
                            encoder_hidden_states_image=image_embeds, return_dict=False)[0]
                    if do_cfg:
                        with self.cache_context("uncond"):
                            noise_uncond = self.transformer(
                                hidden_states=model_input, timestep=timestep,
                                encoder_hidden_states=negative_embeds,
                                encoder_hidden_states_image=image_embeds,
                                return_dict=False)[0]
                        noise_pred = noise_uncond + guidance_scale * (noise_pred - noise_uncond)
                    noise_pred = noise_pred.float()
                    noise_pred[..., :exo_width] = 0.0  # official: the exo half does not move
                    latents = self.scheduler.step(noise_pred, t, latents, return_dict=False)[0]
                    latents[..., :exo_width] = x0      # and is put back exactly clean
                    if callback_on_step_end is not None:
                        callback_on_step_end(self, i, t, {"latents": latents, "exo_latents": x0})
                    progress_bar.update()
        finally:
            reset_step_cache(self.transformer)
            for processor in self.attn1_processors:
                processor.set_geometry(None)

        # 6. Decode the ego half only (the context latent frames exactly clean)
        if given:
            latents[:, :, :given, :, exo_width:] = context
        ego_latents = latents[..., exo_width:]
        video = decode_latents(self.vae, ego_latents, self._execution_device)
        frames = video_tensor_to_frames(video)
        self.maybe_free_model_hooks()
        return EgoXWanPipelineOutput(frames=frames, latents=ego_latents)
