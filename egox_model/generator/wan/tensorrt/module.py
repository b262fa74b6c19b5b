"""`EngineTransformer`: TensorRT engines standing in for the Wan transformer in the pipeline.

It answers what `EgoXWanPipeline` asks of its transformer: `dtype`, `config`
(rope_max_seq_len, image_dim, ...), `attn_processors` (one GGA processor on "attn1" whose
`set_geometry` the pipeline calls once per clip), and a call with the pipeline's keyword
arguments returning a tuple. The GGA bias is computed once per clip (on the first step) by
the same code as the eager kernels and handed to the engine as its `gga_bias` input.

Engines are per clip shape: the first call of a shape loads its plan from the cache; a shape
without a plan is an error naming the `egox export-trt` flags that build it.
"""
from __future__ import annotations

from typing import Callable

import torch

from egox_model.errors import InputError, ModelLoadError
from egox_model.generator.gga import GGAConfig
from egox_model.generator.wan.tensorrt.cache import EngineCache, EngineKey
from egox_model.generator.wan.tensorrt.engine import TensorRTEngine
from egox_model.generator.wan.tensorrt.processor import GGABiasInputProcessor, TokenGrid
from egox_model.generator.wan.tensorrt.shape import OUTPUT_NAME, ClipShape
from egox_model.geometry.latent_grid import PATCH

__all__ = ["EngineTransformer"]

#: Loads the engine of a key: (cache, key, device) -> callable(**inputs) -> {name: tensor}.
EngineLoader = Callable[[EngineCache, EngineKey, torch.device], Callable[..., dict]]


def _load_engine(cache: EngineCache, key: EngineKey, device: torch.device) -> TensorRTEngine:
    plan = cache.find(key)
    if plan is None:
        raise ModelLoadError(cache.missing_message(key))
    return TensorRTEngine(plan, device)


class EngineTransformer(torch.nn.Module):
    """Runs the transformer's forward as TensorRT engines, one per clip shape.

    config: the replaced transformer's config; key_for: the EngineKey of this model, GPU,
    TensorRT and precision for a clip shape; gga: the GGA settings the bias is built with;
    load: how a key's engine is loaded (tests pass a stand-in).
    """

    def __init__(self, config, dtype: torch.dtype, device: torch.device, cache: EngineCache,
                 key_for: Callable[[ClipShape], EngineKey], gga: GGAConfig, *,
                 load: EngineLoader = _load_engine) -> None:
        super().__init__()
        self.config, self._dtype, self._device = config, dtype, torch.device(device)
        self.cache, self.key_for, self._load = cache, key_for, load
        self.processor = GGABiasInputProcessor(gga)
        self.engines: dict[ClipShape, Callable[..., dict]] = {}
        self._zeros: dict[tuple[int, int], torch.Tensor] = {}

    @property
    def dtype(self) -> torch.dtype:
        """The dtype the engines compute in."""
        return self._dtype

    @property
    def device(self) -> torch.device:
        """The GPU the engines run on."""
        return self._device

    @property
    def attn_processors(self) -> dict[str, GGABiasInputProcessor]:
        """One processor-like object on 'attn1' taking the clip's geometry."""
        return {"blocks.0.attn1.processor": self.processor}

    def _shape(self, hidden_states: torch.Tensor, text: torch.Tensor,
               image: torch.Tensor | None) -> ClipShape:
        """The clip shape of a call: exo / ego widths from the GGA geometry if set, else from
        the one cached engine of this model whose total width matches."""
        _, _, frames, height, width = hidden_states.shape
        image_tokens = 0 if image is None else image.shape[1]
        grid = self.processor.grid
        if grid is not None:
            shape = ClipShape(frames, height, grid.exo_cols * PATCH, grid.ego_cols * PATCH,
                              text.shape[1], image_tokens)
            if shape.exo_latent_width + shape.ego_latent_width != width or \
                    shape.token_grid() != grid:
                raise InputError(f"hidden_states {tuple(hidden_states.shape)} do not match the "
                                 f"GGA token geometry {grid}")
            return shape
        for shape in list(self.engines) + [k.shape for _, k in self.cache.keys()
                                           if k == self.key_for(k.shape)]:
            if (shape.latent_frames, shape.latent_height, shape.text_tokens,
                    shape.image_tokens) == (frames, height, text.shape[1], image_tokens) and \
                    shape.exo_latent_width + shape.ego_latent_width == width:
                return shape    # without GGA the bias is zero: any exo | ego split computes it
        raise ModelLoadError(
            f"no TensorRT engine in {self.cache.root} for hidden_states "
            f"{tuple(hidden_states.shape)}; build one with `egox export-trt --frames F "
            f"--exo-size HxW --ego-size HxW` for this clip size")

    def _bias(self, grid: TokenGrid) -> torch.Tensor:
        """This clip's GGA bias (computed once per geometry), or zeros without one."""
        if self.processor.has_geometry and self.processor.config.strength > 0:
            return self.processor.bias_on(self._dtype, self._device)
        size = (grid.num_ego, grid.num_tokens)
        if size not in self._zeros:
            self._zeros = {size: torch.zeros(size, dtype=self._dtype, device=self._device)}
        return self._zeros[size]

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor,
                encoder_hidden_states: torch.Tensor,
                encoder_hidden_states_image: torch.Tensor | None = None,
                return_dict: bool = False, attention_kwargs: dict | None = None
                ) -> tuple[torch.Tensor]:
        """The noise prediction (1, C_out, T, h, w) as a 1-tuple (pipeline: return_dict=False)."""
        if return_dict or attention_kwargs:
            raise InputError("EngineTransformer returns a tuple and takes no attention_kwargs")
        shape = self._shape(hidden_states, encoder_hidden_states, encoder_hidden_states_image)
        if shape not in self.engines:
            self.engines[shape] = self._load(self.cache, self.key_for(shape), self._device)
        inputs = {"hidden_states": hidden_states, "timestep": timestep.float().reshape(1),
                  "encoder_hidden_states": encoder_hidden_states,
                  "gga_bias": self._bias(shape.token_grid())}
        if encoder_hidden_states_image is not None:
            inputs["encoder_hidden_states_image"] = encoder_hidden_states_image
        return (self.engines[shape](**inputs)[OUTPUT_NAME],)
