"""`WanConfig`: every option of the `wan` backend, declared once (egox_model.config).

The same dataclass is filled from Python, CLI flags (`--wan.num_inference_steps 20`) and ROS
parameters (`wan.num_inference_steps`). Defaults follow the official EgoX release (see
docs/wan.md for each choice and its saner alternative).
"""
from __future__ import annotations

from dataclasses import dataclass

from egox_model.config import check_device, check_settings, group, setting
from egox_model.errors import ConfigError
from egox_model.generator.gga import GGAConfig

__all__ = ["CACHES", "CLIP_IMAGE_CHOICES", "COMPILE_MODES", "ConditioningOptions", "DTYPES",
           "MASK_LAYOUTS", "PRECISIONS", "RUNTIMES", "SCHEDULERS", "WanConfig"]

#: dtype names accepted for `dtype` and `vae_dtype`.
DTYPES = ("bfloat16", "float16", "float32")
#: "official": only latent frame 0's exo region is 1 (the release's inference code);
#: "exo": the exo region is 1 in every latent frame (condition vs. synthesis, as the paper says).
MASK_LAYOUTS = ("official", "exo")
#: "official": frame 0 of the decoded initial full-width latent (exo | decoded noise);
#: "prior": exo frame 0 | ego prior frame 0, side by side.
CLIP_IMAGE_CHOICES = ("official", "prior")
#: How the transformer runs (docs/speed.md): diffusers' modules as they are, torch.compile'd,
#: or a TensorRT engine built by `egox export-trt`.
RUNTIMES = ("eager", "compile", "tensorrt")
#: Linear layers of the transformer: unquantized in `dtype`, or FP8 weights and activations.
PRECISIONS = ("bf16", "fp8")
#: torch.compile modes; "reduce-overhead" adds CUDA graphs.
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune-no-cudagraphs")
#: Sampler: "" = the model directory's scheduler class, "euler" = flow-matching Euler,
#: "unipc" = UniPC with flow sigmas (what Wan2.1-I2V-14B-480P-Diffusers ships).
SCHEDULERS = ("", "euler", "unipc")
#: Step caching with diffusers' hooks (step_cache.py): "first_block" reuses the residual of
#: blocks 1..N when block 0's output changed less than `cache_threshold` since the last step.
CACHES = ("none", "first_block")


@dataclass(frozen=True)
class ConditioningOptions:
    """How the condition is built; `zero_prior` and `noisy_exo` are the paper's ablations,
    `previous_output` switches video continuation across overlapping clips."""

    mask_layout: str = setting("official", "mask channels: 'official' marks only latent frame "
                               "0's exo region (the release's inference code), 'exo' every "
                               "frame's exo region", choices=MASK_LAYOUTS)
    clip_image: str = setting("official", "CLIP image: 'official' = frame 0 of the decoded "
                              "initial latent (exo | decoded noise), 'prior' = exo | ego prior "
                              "frame 0", choices=CLIP_IMAGE_CHOICES)
    zero_prior: bool = setting(False, "ablation 'no ego prior': the prior latent p0 is zero")
    noisy_exo: bool = setting(False, "ablation 'noisy exo latent': the exo half is re-noised "
                              "to the current sigma each step (SDEdit-style) instead of clean")
    previous_output: bool = setting(True, "overlapping clips (clip_stride < clip_length): "
                                    "the previous clip's output of the shared frames is "
                                    "held fixed in the next clip's latents (video "
                                    "continuation, no seam); false: each clip is sampled "
                                    "afresh (the seam ablation)")

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True)
class WanConfig:
    """Options of the Wan 2.1 I2V + LoRA + GGA generator.

    Paths are local; nothing is downloaded. "" means unset for paths, 0 for `flow_shift`.
    """

    model_dir: str = setting("", "local diffusers-layout Wan 2.1 I2V directory (required "
                             "with backend 'wan')")
    lora_path: str = setting("", "EgoX LoRA .safetensors file or its directory ('' = none; "
                             "official keys accepted)")
    lora_scale: float = setting(1.0, "LoRA scale when fusing", low=0.0)
    adapter_paths: tuple[str, ...] = setting((), "further LoRA files stacked on the EgoX LoRA "
                                             "and fused with it (e.g. a step-distilled Wan 2.1 "
                                             "I2V LoRA; diffusers, peft or "
                                             "`diffusion_model.` keys)")
    adapter_names: tuple[str, ...] = setting((), "peft adapter names of adapter_paths, one "
                                             "each ([] = adapter_1, adapter_2, ...)")
    adapter_scales: tuple[float, ...] = setting((), "fusing scales of adapter_paths, one each "
                                                "([] = 1.0 each)", low=0.0)
    num_inference_steps: int = setting(50, "denoising steps", low=1)
    guidance_scale: float = setting(5.0, "classifier-free guidance scale (1 disables CFG)",
                                    low=1.0)
    negative_prompt: str = setting("", "negative prompt of classifier-free guidance")
    seed: int = setting(0, "noise seed (the same seed gives the same video on any device)",
                        low=0)
    flow_shift: float = setting(0.0, "overrides the scheduler config's flow shift (Wan: 3.0 "
                                "at 480p, 5.0 at 720p); 0 = the model directory's", low=0.0)
    scheduler: str = setting("", "sampler: '' = the model directory's, 'euler' = flow-matching "
                             "Euler, 'unipc' = UniPC with flow sigmas", choices=SCHEDULERS)
    scheduler_timesteps: tuple[int, ...] = setting((), "fixed timesteps before the shift, one "
                                                   "per step, e.g. [1000, 750, 500, 250] of "
                                                   "lightx2v's 4-step LoRAs ([] = "
                                                   "num_inference_steps evenly spaced; "
                                                   "scheduler 'euler')", low=1, high=1000)
    stochastic_sampling: bool = setting(False, "each step predicts x0 and re-noises it to the "
                                        "next sigma with fresh seeded noise (lightx2v's "
                                        "step-distilled sampler; scheduler 'euler')")
    cache: str = setting("none", "step caching with diffusers' hooks: 'none' or 'first_block' "
                         "(FirstBlockCache: skip blocks 1..N while block 0's output changes "
                         "little; for long schedules)", choices=CACHES)
    cache_threshold: float = setting(0.05, "cache 'first_block': relative change of block 0's "
                                     "output below which the other blocks are skipped "
                                     "(higher = more skipped, less exact)", low=0.0,
                                     low_open=True)
    gga: GGAConfig = group(GGAConfig, "Geometry-Guided Attention in every block's "
                           "self-attention (strength 0 = off)")
    conditioning: ConditioningOptions = group(ConditioningOptions, "how the exo and prior "
                                              "latents condition the transformer")
    runtime: str = setting("eager", "how the transformer runs: 'eager' (diffusers modules), "
                           "'compile' (torch.compile, once per clip shape) or 'tensorrt' (an "
                           "engine from `egox export-trt`, CUDA)", choices=RUNTIMES)
    compile_mode: str = setting("default", "torch.compile mode of runtime 'compile' "
                                "('reduce-overhead' adds CUDA graphs)", choices=COMPILE_MODES)
    precision: str = setting("bf16", "transformer linear layers: 'bf16' = unquantized in "
                             "`dtype`, 'fp8' = FP8 e4m3 weights and activations with row-wise "
                             "scales (CUDA, compute capability >= 8.9)", choices=PRECISIONS)
    engine_dir: str = setting("", "folder of cached TensorRT engines ('' = "
                              "~/.cache/egox/engines)")
    rebuild_engine: bool = setting(False, "`egox export-trt`: rebuild the engine even if a "
                                   "cached one matches (runtime 'tensorrt' refuses it: engines "
                                   "are never built while generating)")
    device: str = setting("auto", "'auto' (CUDA when present), 'cpu', 'cuda' or 'cuda:N'")
    dtype: str = setting("bfloat16", "transformer and text encoder dtype", choices=DTYPES)
    vae_dtype: str = setting("float32", "VAE dtype", choices=DTYPES)
    cpu_offload: bool = setting(False, "model CPU offload: less GPU memory, slower (CUDA)")
    vae_tiling: bool = setting(False, "tiled VAE encode/decode (less memory)")
    text_cache_dir: str = setting("", "folder caching prompt embeddings ('' = no cache)")
    keep_text_encoder: bool = setting(False, "keep the text encoder loaded (else freed after "
                                      "encoding, reloaded only for a new prompt)")
    progress: bool = setting(True, "progress bar of the denoising steps on stderr")

    def __post_init__(self) -> None:
        check_settings(self)
        check_device(self.device)
        for key in ("adapter_names", "adapter_scales"):
            given = getattr(self, key)
            if given and len(given) != len(self.adapter_paths):
                raise ConfigError(f"has {len(given)} entries but adapter_paths has "
                                  f"{len(self.adapter_paths)}; give one per path or none",
                                  key=key, value=list(given))
        names = ["egox", *self.adapter_names]
        if len(set(names)) != len(names) or "" in names:
            raise ConfigError("must be distinct, non-empty and not 'egox' (the EgoX LoRA's)",
                              key="adapter_names", value=list(self.adapter_names))
        if self.scheduler_timesteps:
            steps = self.scheduler_timesteps
            if len(steps) != self.num_inference_steps:
                raise ConfigError(f"has {len(steps)} timesteps but num_inference_steps is "
                                  f"{self.num_inference_steps}; make them equal",
                                  key="scheduler_timesteps", value=list(steps))
            if any(a <= b for a, b in zip(steps, steps[1:])):
                raise ConfigError("must be strictly decreasing", key="scheduler_timesteps",
                                  value=list(steps))
        if (self.scheduler_timesteps or self.stochastic_sampling) and self.scheduler != "euler":
            raise ConfigError("scheduler_timesteps and stochastic_sampling need the flow-"
                              "matching Euler sampler; set scheduler to 'euler'",
                              key="scheduler", value=self.scheduler)
        if self.cache != "none" and self.runtime == "tensorrt":
            raise ConfigError("step caching hooks the transformer's blocks, which a TensorRT "
                              "engine does not have; set cache to 'none' or runtime to "
                              "'eager' / 'compile'", key="cache", value=self.cache)
        if self.runtime == "tensorrt" and self.cpu_offload:
            raise ConfigError("runtime 'tensorrt' keeps the engine on the GPU; set cpu_offload "
                              "to false", key="cpu_offload", value=True)
        if self.cpu_offload and self.device == "cpu":
            raise ConfigError("cpu_offload=true needs a CUDA device; set device to 'cuda' or "
                              "cpu_offload to false")
