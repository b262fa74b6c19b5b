"""Export the Wan transformer (LoRA already fused) with GGA to ONNX for one static clip shape.

Exporter: torch.onnx's dynamo exporter (`dynamo=True`, onnxscript). The TorchScript exporter
(`dynamo=False`) stops at `aten::rms_norm` (Wan's QK norm) in torch 2.13, and it is
deprecated. Opset 18: attention and RMS norm come out as plain MatMul / Softmax / ReduceMean
nodes, which TensorRT fuses into its attention and normalization kernels, rather than the
opset-23 Attention / RMSNormalization ops fewer runtimes take.

What changes for the export, and is restored afterwards:
- attn1 of every block gets one `GGABiasInputProcessor` whose bias is the graph input
  `gga_bias` (zeros = plain attention, so one graph serves GGA on and off);
- the rotary embedding becomes a float32 constant of the clip shape (diffusers computes it in
  float64 from the input's shape, and TensorRT has no float64).
The graph's dtype is the transformer's (bfloat16 for the real model): TensorRT 11 builds
strongly typed networks, so the ONNX types are the engine's types.
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path
from typing import Iterator

import torch

from egox_model.errors import ModelLoadError
from egox_model.generator.wan.pipeline import install_attn1_processor
from egox_model.generator.wan.tensorrt.processor import GGABiasInputProcessor, TokenGrid
from egox_model.generator.wan.tensorrt.shape import INPUT_NAMES, OUTPUT_NAME, ClipShape

__all__ = ["ONNX_OPSET", "export_onnx"]

ONNX_OPSET = 18
log = logging.getLogger(__name__)


class _StaticRope(torch.nn.Module):
    """Stands in for WanRotaryPosEmbed: the (cos, sin) of one clip shape, float32."""

    def __init__(self, freqs: tuple[torch.Tensor, torch.Tensor]) -> None:
        super().__init__()
        self.register_buffer("freqs_cos", freqs[0].float(), persistent=False)
        self.register_buffer("freqs_sin", freqs[1].float(), persistent=False)

    def forward(self, hidden_states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.freqs_cos, self.freqs_sin


class _ExportGraph(torch.nn.Module):
    """The exported function: the graph inputs in INPUT_NAMES order -> the noise prediction."""

    def __init__(self, transformer: torch.nn.Module, processor: GGABiasInputProcessor,
                 grid: TokenGrid, with_image: bool) -> None:
        super().__init__()
        self.transformer, self.processor, self.grid = transformer, processor, grid
        self.with_image = with_image

    def forward(self, hidden_states: torch.Tensor, timestep: torch.Tensor,
                encoder_hidden_states: torch.Tensor, *rest: torch.Tensor) -> torch.Tensor:
        image, gga_bias = rest if self.with_image else (None, *rest)
        self.processor.set_bias(self.grid, gga_bias)
        return self.transformer(hidden_states=hidden_states, timestep=timestep,
                                encoder_hidden_states=encoder_hidden_states,
                                encoder_hidden_states_image=image, return_dict=False)[0]


@contextlib.contextmanager
def exportable(transformer: torch.nn.Module, shape: ClipShape) -> Iterator[_ExportGraph]:
    """The transformer as an `_ExportGraph` for `shape`; its processors and rotary embedding
    are put back on exit."""
    processors, rope = transformer.attn_processors, transformer.rope
    device = next(transformer.parameters()).device
    dummy = torch.empty(shape.input_shapes(transformer.config)["hidden_states"], device="meta")
    processor = GGABiasInputProcessor()
    try:
        transformer.rope = _StaticRope(tuple(f.to(device) for f in rope(dummy)))
        install_attn1_processor(transformer, processor)
        yield _ExportGraph(transformer, processor, shape.token_grid(), shape.image_tokens > 0)
    finally:
        processor.set_bias(None, None)
        transformer.rope = rope
        transformer.set_attn_processor(processors)


def export_onnx(transformer: torch.nn.Module, shape: ClipShape, path: Path) -> Path:
    """Write `transformer` (LoRA fused) as ONNX for `shape` to `path`, weights in
    `path` + ".data" beside it (external data: the 14B model is far over protobuf's 2 GB).

    Inputs INPUT_NAMES (no image input without image_dim), output OUTPUT_NAME; dtypes as
    `ClipShape.example_inputs`. Returns `path`.
    """
    if transformer.config.patch_size[0] != 1 or tuple(transformer.config.patch_size[1:]) != (
            2, 2):
        raise ModelLoadError(f"TensorRT export supports Wan's 1x2x2 patch, this transformer "
                             f"has {transformer.config.patch_size}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    dtype = transformer.dtype
    device = next(transformer.parameters()).device
    inputs = shape.example_inputs(transformer.config, dtype, device)
    names = list(inputs)
    log.info("exporting the transformer (%s) for clip shape %s to %s", dtype, shape.tag, path)
    with torch.no_grad(), exportable(transformer, shape) as graph, warnings.catch_warnings():
        warnings.simplefilter("ignore")   # exporter chatter (torchvision ops, deprecations)
        torch.onnx.export(graph, tuple(inputs.values()), str(path), dynamo=True,
                          opset_version=ONNX_OPSET, input_names=names,
                          output_names=[OUTPUT_NAME], external_data=True, optimize=True,
                          verbose=False, report=False)
    assert set(names) <= set(INPUT_NAMES)
    return path
