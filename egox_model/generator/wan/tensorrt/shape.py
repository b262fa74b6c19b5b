"""`ClipShape`: the static input shape an ONNX graph / TensorRT engine is built for."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from egox_model.errors import ModelLoadError
from egox_model.generator.wan.tensorrt.processor import TokenGrid
from egox_model.generator.wan.text_cache import TEXT_LENGTH
from egox_model.geometry.latent_grid import PATCH, VAE_SPACE, VAE_TIME, check_clip_shapes

__all__ = ["INPUT_NAMES", "OUTPUT_NAME", "ClipShape", "image_tokens_of"]

#: Graph inputs, in order; "encoder_hidden_states_image" only for models with image_dim.
INPUT_NAMES = ("hidden_states", "timestep", "encoder_hidden_states",
               "encoder_hidden_states_image", "gga_bias")
OUTPUT_NAME = "noise_pred"


def image_tokens_of(model_dir: Path) -> int:
    """CLIP tokens the pipeline feeds the transformer: (image_size / patch_size)^2 + 1 (257
    for Wan 2.1 I2V's ViT-H/14 at 224 px); 0 for a model without image_encoder."""
    path = Path(model_dir) / "image_encoder" / "config.json"
    if not path.is_file():
        return 0
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"cannot read {path}: {err}") from err
    vision = config.get("vision_config", config)
    return (vision["image_size"] // vision["patch_size"]) ** 2 + 1


@dataclass(frozen=True)
class ClipShape:
    """One clip's transformer inputs, batch 1 (the pipeline calls the conditional and the
    unconditional pass separately), in latent units:

    hidden_states (1, C_in, T, h, w_x + w_e), timestep (1,) float32,
    encoder_hidden_states (1, text_tokens, text_dim),
    encoder_hidden_states_image (1, image_tokens, image_dim) (image_tokens 0 = none),
    gga_bias (N_e, N) -> noise_pred (1, C_out, T, h, w_x + w_e).
    """

    latent_frames: int
    latent_height: int
    exo_latent_width: int
    ego_latent_width: int
    text_tokens: int = TEXT_LENGTH
    image_tokens: int = 257

    @classmethod
    def from_pixels(cls, frames: int, exo_hw: tuple[int, int], ego_hw: tuple[int, int], *,
                    image_tokens: int = 257) -> ClipShape:
        """The shape of a clip of `frames` (4k+1) frames, exo and ego (H, W) in pixels."""
        check_clip_shapes(frames, exo_hw, ego_hw)
        return cls((frames - 1) // VAE_TIME + 1, exo_hw[0] // VAE_SPACE,
                   exo_hw[1] // VAE_SPACE, ego_hw[1] // VAE_SPACE, image_tokens=image_tokens)

    @property
    def pixels(self) -> tuple[int, tuple[int, int], tuple[int, int]]:
        """(frames, exo (H, W), ego (H, W)) in pixels, as `egox export-trt` takes them."""
        height = self.latent_height * VAE_SPACE
        return ((self.latent_frames - 1) * VAE_TIME + 1,
                (height, self.exo_latent_width * VAE_SPACE),
                (height, self.ego_latent_width * VAE_SPACE))

    @property
    def tag(self) -> str:
        """Short name for file names, e.g. 't13-h56-x98-e56-txt512-img257'."""
        return (f"t{self.latent_frames}-h{self.latent_height}-x{self.exo_latent_width}-"
                f"e{self.ego_latent_width}-txt{self.text_tokens}-img{self.image_tokens}")

    @property
    def export_flags(self) -> str:
        """The `egox export-trt` flags that build this shape."""
        frames, (eh, ew), (gh, gw) = self.pixels
        return f"--frames {frames} --exo-size {eh}x{ew} --ego-size {gh}x{gw}"

    def token_grid(self) -> TokenGrid:
        """The transformer's token grid (patch 1 x 2 x 2)."""
        return TokenGrid(self.latent_frames, self.latent_height // PATCH,
                         self.exo_latent_width // PATCH, self.ego_latent_width // PATCH)

    def input_shapes(self, model_config) -> dict[str, tuple[int, ...]]:
        """Shape of each graph input for a transformer config (diffusers' WanTransformer3D)."""
        grid = self.token_grid()
        shapes = {
            "hidden_states": (1, model_config.in_channels, self.latent_frames,
                              self.latent_height, self.exo_latent_width + self.ego_latent_width),
            "timestep": (1,),
            "encoder_hidden_states": (1, self.text_tokens, model_config.text_dim),
            "encoder_hidden_states_image": (1, self.image_tokens, model_config.image_dim or 0),
            "gga_bias": (grid.num_ego, grid.num_tokens),
        }
        if not self.image_tokens:
            del shapes["encoder_hidden_states_image"]
        return shapes

    def example_inputs(self, model_config, dtype: torch.dtype,
                       device: torch.device | str = "cpu", seed: int = 0
                       ) -> dict[str, torch.Tensor]:
        """Seeded random inputs of this shape (timestep float32, the rest in `dtype`); the
        GGA bias is zero (no geometry)."""
        g = torch.Generator().manual_seed(seed)
        out = {}
        for name, shape in self.input_shapes(model_config).items():
            if name == "timestep":
                out[name] = torch.full(shape, 500.0)
            elif name == "gga_bias":
                out[name] = torch.zeros(shape, dtype=dtype)
            else:
                out[name] = torch.randn(shape, generator=g).to(dtype)
        return {name: x.to(device) for name, x in out.items()}
