"""Build the Wan 2.1 I2V components from a LOCAL model directory in diffusers layout.

Layout (Wan2.1-I2V-14B-480P-Diffusers, Wan2.1-Fun-1.3B-InP in diffusers format):

    model_dir/transformer/      WanTransformer3DModel, in_channels 36 = 16 noise + 4 mask + 16 cond
    model_dir/vae/              AutoencoderKLWan (z_dim 16)
    model_dir/text_encoder/     UMT5EncoderModel
    model_dir/tokenizer/        its tokenizer
    model_dir/image_encoder/    CLIPVisionModel(WithProjection)  } only when the transformer has
    model_dir/image_processor/  CLIPImageProcessor                } image_dim (Wan 2.1 I2V)
    model_dir/scheduler/        scheduler_config.json: flow-matching scheduler and shift

Nothing is ever downloaded (`local_files_only=True`); every problem raises ModelLoadError
naming the component, what is wrong and how to fix it.
"""
from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from egox_model.errors import ModelLoadError

__all__ = ["MASK_CHANNELS", "StepListScheduler", "WanComponents", "check_model_dir",
           "load_components", "load_scheduler", "load_text_encoder", "load_transformer",
           "resolve_dtype"]

#: Mask channels between the noise and the condition latent (= VAE temporal factor 4).
MASK_CHANNELS = 4
_CONFIG_FILES = {
    "transformer": "config.json",
    "vae": "config.json",
    "text_encoder": "config.json",
    "tokenizer": "tokenizer_config.json",
    "image_encoder": "config.json",
    "image_processor": "preprocessor_config.json",
    "scheduler": "scheduler_config.json",
}
#: Schedulers that implement Wan's flow matching (UniPC only with use_flow_sigmas).
_SCHEDULERS = ("FlowMatchEulerDiscreteScheduler", "UniPCMultistepScheduler")


@dataclass
class WanComponents:
    """The loaded modules. `text_encoder` may be None (unloaded; see WanConfig.keep_text_encoder);
    `image_encoder`/`image_processor` are None for transformers without image_dim;
    `transformer` is None when not asked for (`load_components(transformer=False)`)."""

    transformer: torch.nn.Module | None
    vae: torch.nn.Module
    scheduler: object
    tokenizer: object
    text_encoder: torch.nn.Module | None
    image_encoder: torch.nn.Module | None
    image_processor: object | None


def resolve_dtype(name: str) -> torch.dtype:
    """torch dtype from its name ('bfloat16', 'float16', 'float32')."""
    return getattr(torch, name)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"cannot read {path}: {err}") from err


def check_model_dir(model_dir: Path) -> dict[str, dict]:
    """Validate the layout and the configs' fit before loading any weight; returns the configs.

    Checks: every component folder with its config file; transformer in_channels ==
    2 * vae z_dim + 4 and out_channels == z_dim; text_dim == text encoder d_model;
    image_dim == image encoder hidden_size.
    """
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ModelLoadError(f"model_dir {str(model_dir)!r} is not a directory; point it at a "
                             "local diffusers-layout Wan 2.1 I2V model (nothing is downloaded)")
    transformer_cfg_path = model_dir / "transformer" / _CONFIG_FILES["transformer"]
    needed = ["transformer", "vae", "text_encoder", "tokenizer", "scheduler"]
    if transformer_cfg_path.is_file() and _read_json(transformer_cfg_path).get("image_dim"):
        needed += ["image_encoder", "image_processor"]
    missing = [f"{name}/{_CONFIG_FILES[name]}" for name in needed
               if not (model_dir / name / _CONFIG_FILES[name]).is_file()]
    if missing:
        raise ModelLoadError(f"model_dir {str(model_dir)!r} lacks {', '.join(missing)}; it must "
                             "hold the diffusers layout of Wan2.1-I2V-14B-480P-Diffusers "
                             "(or Wan2.1-Fun-1.3B-InP converted to diffusers)")
    configs = {name: _read_json(model_dir / name / _CONFIG_FILES[name]) for name in needed}
    tcfg, vcfg = configs["transformer"], configs["vae"]
    z_dim = int(vcfg.get("z_dim", 16))
    want_in = 2 * z_dim + MASK_CHANNELS
    if tcfg.get("in_channels") != want_in:
        raise ModelLoadError(
            f"transformer in_channels is {tcfg.get('in_channels')} but EgoX conditioning needs "
            f"{want_in} = {z_dim} noise + {MASK_CHANNELS} mask + {z_dim} condition channels: use "
            "an I2V / InP transformer (text-to-video checkpoints have 16)")
    if tcfg.get("out_channels", want_in) != z_dim:
        raise ModelLoadError(f"transformer out_channels is {tcfg.get('out_channels')} but the "
                             f"VAE's z_dim is {z_dim}; the two come from different models")
    d_model = configs["text_encoder"].get("d_model")
    if tcfg.get("text_dim") != d_model:
        raise ModelLoadError(f"transformer text_dim is {tcfg.get('text_dim')} but text_encoder "
                             f"d_model is {d_model}; the two come from different models")
    if "image_encoder" in configs:
        enc = configs["image_encoder"]
        hidden = enc.get("vision_config", enc).get("hidden_size")
        if tcfg["image_dim"] != hidden:
            raise ModelLoadError(f"transformer image_dim is {tcfg['image_dim']} but "
                                 f"image_encoder hidden_size is {hidden}")
    scheduler_cls = configs["scheduler"].get("_class_name")
    if scheduler_cls not in _SCHEDULERS:
        raise ModelLoadError(f"scheduler/_class_name is {scheduler_cls!r}; Wan samples with "
                             f"flow matching: use one of {list(_SCHEDULERS)}")
    if scheduler_cls == "UniPCMultistepScheduler" and (
            not configs["scheduler"].get("use_flow_sigmas")
            or configs["scheduler"].get("prediction_type") != "flow_prediction"):
        raise ModelLoadError("scheduler is UniPCMultistepScheduler without use_flow_sigmas=true "
                             "and prediction_type='flow_prediction'; Wan needs both")
    return configs


def _load(what: str, loader, path: Path, **kwargs):
    try:
        return loader(str(path), local_files_only=True, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError) as err:
        raise ModelLoadError(f"cannot load {what} from {path}: {err}") from err


class StepListScheduler:
    """Mixin for diffusers' FlowMatchEulerDiscreteScheduler (see `load_scheduler`): optional
    fixed timesteps and seeded noise for `stochastic_sampling`.

    `fixed_timesteps` (e.g. lightx2v's [1000, 750, 500, 250]) replace the evenly spaced ones:
    sigma = t / 1000 before the shift, as lightx2v's step-distilled sampler. The noise of
    stochastic sampling comes from a CPU generator seeded with `noise_seed` at every
    `set_timesteps` (once per clip), so a seed gives the same video on any device.
    """

    fixed_timesteps: tuple[int, ...] = ()
    noise_seed: int = 0

    def set_timesteps(self, num_inference_steps=None, device=None, sigmas=None, mu=None,
                      timesteps=None):
        if sigmas is None and timesteps is None and self.fixed_timesteps:
            if num_inference_steps not in (None, len(self.fixed_timesteps)):
                raise ValueError(f"num_inference_steps is {num_inference_steps} but the "
                                 f"scheduler has {len(self.fixed_timesteps)} fixed timesteps "
                                 f"{list(self.fixed_timesteps)}")
            sigmas = [t / self.config.num_train_timesteps for t in self.fixed_timesteps]
        super().set_timesteps(num_inference_steps, device, sigmas=sigmas, mu=mu,
                              timesteps=timesteps)
        self.noise_generator = torch.Generator().manual_seed(self.noise_seed)

    def step(self, model_output, timestep, sample, *args, generator=None, **kwargs):
        if generator is None and self.config.stochastic_sampling:
            generator = self.noise_generator
        return super().step(model_output, timestep, sample, *args, generator=generator,
                            **kwargs)


@functools.cache
def _step_list_euler() -> type:
    """FlowMatchEulerDiscreteScheduler with `StepListScheduler` (made once, on first use, to
    keep diffusers out of this module's import)."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    return type("StepListEulerScheduler", (StepListScheduler, FlowMatchEulerDiscreteScheduler),
                {"__module__": __name__, "__doc__": StepListScheduler.__doc__})


#: What `kind` of `load_scheduler` selects: diffusers class name and its fixed config.
_KINDS = {"euler": ("FlowMatchEulerDiscreteScheduler", {}),
          "unipc": ("UniPCMultistepScheduler", {"use_flow_sigmas": True,
                                                "prediction_type": "flow_prediction"})}


def load_scheduler(model_dir: Path, flow_shift: float | None = None, *, kind: str = "",
                   timesteps: tuple[int, ...] = (), stochastic_sampling: bool = False,
                   noise_seed: int = 0):
    """The scheduler of model_dir/scheduler, optionally as another flow-matching `kind`
    ("euler" or "unipc"; "" = the directory's class) and with another shift.

    Switching the class keeps the directory's shift (`shift` <-> `flow_shift`) unless
    `flow_shift` overrides it. `timesteps` (fixed timesteps, one per step) and
    `stochastic_sampling` (x0 prediction re-noised to the next sigma with noise seeded by
    `noise_seed`) need the Euler sampler; see `StepListScheduler`.
    """
    import diffusers

    config = _read_json(Path(model_dir) / "scheduler" / _CONFIG_FILES["scheduler"])
    name, fixed = _KINDS[kind] if kind else (config["_class_name"], {})
    cls = getattr(diffusers, name)
    euler = cls is diffusers.FlowMatchEulerDiscreteScheduler
    if (timesteps or stochastic_sampling) and not euler:
        raise ModelLoadError(f"scheduler_timesteps and stochastic_sampling need the flow-"
                             f"matching Euler sampler, but the scheduler is {name}; set "
                             "scheduler to 'euler'")
    shift_key = "shift" if euler else "flow_shift"
    if flow_shift is None and name != config["_class_name"]:
        old_key = "flow_shift" if shift_key == "shift" else "shift"
        flow_shift = config.get(old_key, config.get(shift_key))
    overrides = dict(fixed)
    if flow_shift is not None:
        overrides[shift_key] = flow_shift
    if euler:
        cls = _step_list_euler()
    if stochastic_sampling:
        overrides["stochastic_sampling"] = True
    scheduler = _load("scheduler", cls.from_pretrained, Path(model_dir) / "scheduler",
                      **overrides)
    if euler:
        scheduler.fixed_timesteps, scheduler.noise_seed = tuple(timesteps), noise_seed
    return scheduler


def load_transformer(model_dir: Path, dtype: torch.dtype) -> torch.nn.Module:
    """The WanTransformer3DModel of model_dir/transformer in `dtype`, frozen, in eval mode."""
    from diffusers import WanTransformer3DModel

    model = _load("transformer", WanTransformer3DModel.from_pretrained,
                  Path(model_dir) / "transformer", torch_dtype=dtype)
    return model.eval().requires_grad_(False)


def load_text_encoder(model_dir: Path, dtype: torch.dtype) -> torch.nn.Module:
    """The UMT5 text encoder (~11 GB in bf16 for Wan 14B) in eval mode."""
    from transformers import UMT5EncoderModel

    model = _load("text_encoder", UMT5EncoderModel.from_pretrained,
                  Path(model_dir) / "text_encoder", dtype=dtype)
    return model.eval().requires_grad_(False)


def load_components(model_dir: Path, *, dtype: torch.dtype = torch.bfloat16,
                    vae_dtype: torch.dtype = torch.float32, flow_shift: float | None = None,
                    text_encoder: bool = True, scheduler_options: dict | None = None,
                    transformer: bool = True) -> WanComponents:
    """Check `model_dir` and load every component (weights on CPU; move them afterwards).

    dtype is for the transformer and text encoder; the VAE and image encoder use vae_dtype.
    text_encoder=False leaves it unloaded (prompts then come from the embedding cache);
    transformer=False too (training's preprocessing needs only the encoders).
    scheduler_options: keyword arguments of `load_scheduler` (kind, timesteps, ...).
    """
    model_dir = Path(model_dir)
    configs = check_model_dir(model_dir)          # before the heavy imports: fail fast

    from diffusers import AutoencoderKLWan
    import transformers
    from transformers import AutoTokenizer, CLIPImageProcessor

    transformer = load_transformer(model_dir, dtype) if transformer else None
    vae = _load("vae", AutoencoderKLWan.from_pretrained, model_dir / "vae", torch_dtype=vae_dtype)
    tokenizer = _load("tokenizer", AutoTokenizer.from_pretrained, model_dir / "tokenizer")
    image_encoder = image_processor = None
    if "image_encoder" in configs:
        # CLIPVisionModel (Wan's release) or CLIPVisionModelWithProjection: same trunk.
        arch = (configs["image_encoder"].get("architectures") or ["CLIPVisionModel"])[0]
        if arch not in ("CLIPVisionModel", "CLIPVisionModelWithProjection"):
            raise ModelLoadError(f"image_encoder architecture is {arch!r}; Wan 2.1 I2V uses "
                                 "CLIPVisionModel (ViT-H/14)")
        image_encoder = _load("image_encoder", getattr(transformers, arch).from_pretrained,
                              model_dir / "image_encoder", dtype=vae_dtype)
        image_encoder = image_encoder.eval().requires_grad_(False)
        image_processor = _load("image_processor", CLIPImageProcessor.from_pretrained,
                                model_dir / "image_processor")
    return WanComponents(
        transformer=transformer,
        vae=vae.eval().requires_grad_(False),
        scheduler=load_scheduler(model_dir, flow_shift, **(scheduler_options or {})),
        tokenizer=tokenizer,
        text_encoder=load_text_encoder(model_dir, dtype) if text_encoder else None,
        image_encoder=image_encoder,
        image_processor=image_processor,
    )
