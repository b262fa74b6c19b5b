"""`WanConfig`: every option of the `wan` backend, validated in one place.

The same dataclass is filled from Python, CLI flags (`egox generate`) and ROS parameters.
Defaults follow the official EgoX release (see docs/wan.md for each choice and its
saner alternative).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from egox_model.errors import InputError
from egox_model.generator.gga import GGAConfig
from egox_model.prior import PriorConfig

__all__ = ["CLIP_IMAGE_CHOICES", "DTYPES", "MASK_LAYOUTS", "WanConfig"]

#: dtype names accepted for `dtype` and `vae_dtype`.
DTYPES = ("bfloat16", "float16", "float32")
#: "official": only latent frame 0's exo region is 1 (the release's inference code);
#: "exo": the exo region is 1 in every latent frame (condition vs. synthesis, as the paper says).
MASK_LAYOUTS = ("official", "exo")
#: "official": frame 0 of the decoded initial full-width latent (exo | decoded noise);
#: "prior": exo frame 0 | ego prior frame 0, side by side.
CLIP_IMAGE_CHOICES = ("official", "prior")


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InputError(f"{name} must be one of {list(choices)}, got {value!r}")


@dataclass
class WanConfig:
    """Options of the Wan 2.1 I2V + LoRA + GGA generator.

    Paths are local; nothing is downloaded. `device=None` picks CUDA when available.
    Ablations (paper table): `gga=False` (no GGA), `zero_prior=True` (p0 = 0),
    `noisy_exo=True` (exo half re-noised to the current sigma each step, SDEdit-style,
    instead of the clean x0).
    """

    model_dir: str | Path
    lora_path: str | Path | None = None
    lora_scale: float = 1.0
    num_inference_steps: int = 50
    guidance_scale: float = 5.0
    negative_prompt: str = ""
    seed: int = 0
    #: Overrides the scheduler config's flow shift when set (Wan: 3.0 at 480p, 5.0 at 720p).
    flow_shift: float | None = None
    gga: bool = True
    gga_strength: float = 3.0
    gga_form: str = "official"
    gga_kernel: str = "split"
    zero_prior: bool = False
    noisy_exo: bool = False
    mask_layout: str = "official"
    clip_image: str = "official"
    device: str | None = None
    dtype: str = "bfloat16"
    vae_dtype: str = "float32"
    cpu_offload: bool = False
    vae_tiling: bool = False
    #: Text embeddings are cached here (one safetensors file per prompt and text encoder).
    text_cache_dir: str | Path | None = None
    #: False: the text encoder is freed after encoding and reloaded only for a new prompt.
    keep_text_encoder: bool = False
    progress: bool = True
    prior: PriorConfig = field(default_factory=PriorConfig)

    def __post_init__(self) -> None:
        self.model_dir = Path(self.model_dir).expanduser()
        if self.lora_path is not None:
            self.lora_path = Path(self.lora_path).expanduser()
        if self.text_cache_dir is not None:
            self.text_cache_dir = Path(self.text_cache_dir).expanduser()
        if int(self.num_inference_steps) < 1:
            raise InputError(f"num_inference_steps must be >= 1, got {self.num_inference_steps}")
        if not self.guidance_scale >= 1.0:
            raise InputError(f"guidance_scale must be >= 1 (1 disables CFG), "
                             f"got {self.guidance_scale}")
        if self.flow_shift is not None and not self.flow_shift > 0:
            raise InputError(f"flow_shift must be positive, got {self.flow_shift}")
        self.gga_config()  # validates strength, form and kernel
        _choice("mask_layout", self.mask_layout, MASK_LAYOUTS)
        _choice("clip_image", self.clip_image, CLIP_IMAGE_CHOICES)
        _choice("dtype", self.dtype, DTYPES)
        _choice("vae_dtype", self.vae_dtype, DTYPES)
        if self.device is not None and not str(self.device).startswith(("cpu", "cuda")):
            raise InputError(f"device must be 'cpu', 'cuda' or 'cuda:N', got {self.device!r}")
        if self.cpu_offload and self.device is not None and str(self.device) == "cpu":
            raise InputError("cpu_offload needs a CUDA device; set device='cuda' or "
                             "cpu_offload=False")

    def gga_config(self) -> GGAConfig:
        """The GGA processor settings (lambda, bias form, kernel)."""
        return GGAConfig(strength=self.gga_strength, form=self.gga_form, kernel=self.gga_kernel)
