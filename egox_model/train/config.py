"""`TrainConfig`: every option of `egox train`, declared once (flags `--optim.lr 1e-4`, ...).

Defaults follow the official EgoX release: rank-256 LoRA on to_q/to_k/to_v/to_out.0 of attn1
and attn2, AdamW lr 2e-5 betas (0.9, 0.95) weight decay 1e-4, gradient clipping 1.0, 100
warm-up steps, batch 1 per GPU, bf16 base weights, gradient checkpointing, GGA strength 1.
"""
from __future__ import annotations

from dataclasses import dataclass

from egox_model.config import check_device, check_settings, group, setting
from egox_model.errors import ConfigError, InputError
from egox_model.generator.wan.config import CLIP_IMAGE_CHOICES, DTYPES, MASK_LAYOUTS
from egox_model.geometry.latent_grid import PIXELS_PER_TOKEN, check_num_frames
from egox_model.perception.config import PerceptionConfig
from egox_model.prior import PriorConfig

__all__ = ["DataOptions", "LoraOptions", "OptimOptions", "TrainConfig"]

#: LR after warm-up: constant, linear decay to 0, or cosine decay to 0 at the last step.
LR_SCHEDULES = ("constant", "linear", "cosine")


@dataclass(frozen=True)
class DataOptions:
    """Which clips, at what resolution, and where their preprocessing cache lives."""

    root: str = setting("", "paired-clip dataset root (docs/training.md; required)")
    split: str = setting("train", "split of ROOT/splits.json to train on")
    val_split: str = setting("", "split whose loss is measured every val_every steps ('' = "
                             "none; e.g. 'val')")
    cache_dir: str = setting("", "preprocessing cache ('' = ROOT/cache): latents, text and "
                             "CLIP embeddings, GGA token geometry, one file per clip")
    frames: int = setting(49, "frames per clip (4k+1; the first ones are used)", low=1)
    height: int = setting(448, "height of both halves in pixels (multiple of 16)", low=16)
    exo_width: int = setting(784, "exo half width in pixels (multiple of 16)", low=16)
    ego_width: int = setting(448, "ego half width in pixels (multiple of 16)", low=16)
    mask_layout: str = setting("official", "mask channels, as wan.conditioning.mask_layout",
                               choices=MASK_LAYOUTS)
    clip_image: str = setting("prior", "CLIP image: 'prior' = exo | ego prior frame 0 (what "
                              "inference can see), 'official' = exo | ego ground truth frame 0 "
                              "(the release's training)", choices=CLIP_IMAGE_CHOICES)

    def __post_init__(self) -> None:
        check_settings(self)
        try:
            check_num_frames(self.frames)
        except InputError as err:
            raise ConfigError(str(err), key="frames", value=self.frames) from err
        for key in ("height", "exo_width", "ego_width"):
            if getattr(self, key) % PIXELS_PER_TOKEN:
                raise ConfigError(f"must be a multiple of {PIXELS_PER_TOKEN}", key=key,
                                  value=getattr(self, key))


@dataclass(frozen=True)
class OptimOptions:
    """AdamW on the LoRA weights, LR warm-up and schedule, clipping, steps."""

    steps: int = setting(3000, "optimizer steps (batch 1 per process)", low=1)
    lr: float = setting(2e-5, "peak learning rate", low=0.0, low_open=True)
    beta1: float = setting(0.9, "AdamW beta1", low=0.0, high=1.0, high_open=True)
    beta2: float = setting(0.95, "AdamW beta2", low=0.0, high=1.0, high_open=True)
    weight_decay: float = setting(1e-4, "AdamW decoupled weight decay", low=0.0)
    eps: float = setting(1e-8, "AdamW epsilon", low=0.0, low_open=True)
    warmup_steps: int = setting(100, "linear LR warm-up from 0 over this many steps", low=0)
    schedule: str = setting("constant", "LR after warm-up", choices=LR_SCHEDULES)
    grad_clip: float = setting(1.0, "clip the LoRA gradient's global L2 norm (0 = off)",
                               low=0.0)

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True)
class LoraOptions:
    """The LoRA trained on the transformer (official naming, loadable by wan.lora_path)."""

    rank: int = setting(256, "LoRA rank r", low=1)
    alpha: float = setting(256.0, "LoRA alpha (scale alpha / r)", low=0.0, low_open=True)

    def __post_init__(self) -> None:
        check_settings(self)


@dataclass(frozen=True)
class TrainConfig:
    """Options of `egox train`; the output folder and resuming are command-line arguments."""

    model_dir: str = setting("", "local diffusers-layout Wan 2.1 I2V directory (required)")
    data: DataOptions = group(DataOptions, "dataset, resolution and preprocessing cache")
    optim: OptimOptions = group(OptimOptions, "optimizer and learning-rate schedule")
    lora: LoraOptions = group(LoraOptions, "LoRA shape")
    prior: PriorConfig = group(PriorConfig, "the ego prior rendered for clips without "
                               "prior.mp4: give the settings inference will use")
    perception: PerceptionConfig = group(PerceptionConfig, "depth (and mask) estimation "
                                         "for clips with neither prior.mp4 nor "
                                         "exo_depth.npz (docs/perception.md)")
    gga_strength: float = setting(1.0, "GGA lambda during training (official: 1; 0 = stock "
                                  "attention)", low=0.0)
    gga_form: str = setting("official", "GGA bias form, as wan.gga.form",
                            choices=("official", "power"))
    gga_kernel: str = setting("chunked", "GGA kernel with gradients: 'chunked' or 'dense' "
                              "('split' merges partial softmaxes by their log-sum-exp, which "
                              "the fused kernels return without a gradient)",
                              choices=("chunked", "dense"))
    dtype: str = setting("bfloat16", "frozen base weights' dtype (LoRA weights and the loss "
                         "are float32; on CUDA the forward runs under bf16 autocast)",
                         choices=DTYPES)
    vae_dtype: str = setting("float32", "VAE / CLIP image encoder dtype for preprocessing",
                             choices=DTYPES)
    gradient_checkpointing: bool = setting(True, "recompute each block's activations in "
                                           "the backward pass")
    val_every: int = setting(0, "measure the val_split loss every N steps and at the end "
                             "(0 = never): mean over its clips of val_draws fixed draws each",
                             low=0)
    val_draws: int = setting(4, "fixed (sigma, noise) draws per validation clip", low=1)
    save_every: int = setting(500, "write a resumable checkpoint every N steps (and at the "
                              "end)", low=1)
    keep_checkpoints: int = setting(2, "newest checkpoints kept (0 = all)", low=0)
    seed: int = setting(0, "seed of the clip order, timesteps and noise (each step's draws "
                        "depend only on seed, step and process, so a resumed run repeats "
                        "them)", low=0)
    overfit_draws: int = setting(0, "0 = fresh draws every step; N > 0 = step s reuses the "
                                 "draws of step s mod N (overfitting check: the loss must "
                                 "fall)", low=0)
    device: str = setting("auto", "preprocessing and single-process device: 'auto', 'cpu', "
                          "'cuda' (accelerate launch picks one GPU per process)")

    def __post_init__(self) -> None:
        check_settings(self)
        check_device(self.device)
