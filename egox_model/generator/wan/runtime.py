"""How the loaded transformer runs: `runtime` (eager / compile / tensorrt) and `precision`.

Applied by `build_pipeline` after the LoRA is fused, GGA installed and the pipeline placed:

- precision "fp8": torchao's float8 dynamic-activation + float8-weight config with row-wise
  scales on the Linear layers of the transformer blocks (the embedders, the output head and
  everything outside the transformer stay in `dtype`). torchao rather than NVIDIA ModelOpt:
  it needs no calibration data (scales are taken per token and per output channel at run
  time), it is a 3 MB wheel, and inductor fuses its activation quantization into the
  preceding kernels under runtime "compile". ModelOpt's FP8 PTQ targets TensorRT export.
- runtime "compile": `torch.compile` of the transformer (GGA processors included), static
  shapes: the first clip of a shape compiles, later clips of that shape reuse the graphs.
- runtime "tensorrt": the transformer is replaced by a TensorRT engine built by `egox export-trt`
  (the `tensorrt` package, docs/tensorrt.md).
"""
from __future__ import annotations

from pathlib import Path

import torch

from egox_model.errors import ConfigError
from egox_model.generator.wan.config import WanConfig

__all__ = ["FP8_MIN_CAPABILITY", "apply_runtime", "compile_transformer", "quantize_fp8"]

#: FP8 tensor cores: Ada (8.9) and Hopper (9.0) onwards.
FP8_MIN_CAPABILITY = (8, 9)


def _is_block_linear(module: torch.nn.Module, name: str) -> bool:
    """A Linear layer of a transformer block whose sizes FP8 matmuls take (multiples of 16)."""
    return (isinstance(module, torch.nn.Linear) and name.startswith("blocks.")
            and module.in_features % 16 == 0 and module.out_features % 16 == 0)


def quantize_fp8(transformer: torch.nn.Module) -> int:
    """Quantize the block Linear layers of a CUDA bf16 `transformer` to FP8 in place
    (torchao, row-wise scales); returns how many layers were converted."""
    device = next(transformer.parameters()).device
    if device.type != "cuda" or torch.cuda.get_device_capability(device) < FP8_MIN_CAPABILITY:
        where = (torch.cuda.get_device_name(device) if device.type == "cuda" else device.type)
        raise ConfigError(f"needs a CUDA GPU with compute capability >= 8.9 (Ada, Hopper); the "
                          f"transformer is on {where}", key="precision", value="fp8")
    try:
        from torchao.quantization import (Float8DynamicActivationFloat8WeightConfig, PerRow,
                                          quantize_)
    except ImportError as err:
        raise ConfigError(f"needs torchao (pip install torchao==0.18.0): {err}",
                          key="precision", value="fp8") from err
    count = sum(_is_block_linear(m, n) for n, m in transformer.named_modules())
    quantize_(transformer, Float8DynamicActivationFloat8WeightConfig(granularity=PerRow()),
              filter_fn=_is_block_linear)
    return count


def compile_transformer(transformer: torch.nn.Module, mode: str = "default") -> None:
    """torch.compile the transformer's blocks in place (diffusers' regional compilation: one
    block is compiled and its code reused by all 40, so compiling takes one block's time).
    Static shapes: the first clip of a shape compiles, later clips of that shape reuse it."""
    transformer.compile_repeated_blocks(mode=mode, dynamic=False)


def apply_runtime(pipe, config: WanConfig, model_dir: Path) -> dict:
    """Apply `config.precision` and `config.runtime` to `pipe.transformer`; returns what was
    done, for diagnostics."""
    info: dict = {"runtime": config.runtime, "precision": config.precision}
    if config.runtime == "tensorrt":
        if config.precision == "fp8":
            raise ConfigError("FP8 inside TensorRT engines is not built here; use precision "
                              "'bf16' with runtime 'tensorrt', or runtime 'compile' for FP8",
                              key="precision", value="fp8")
        from egox_model.generator.wan.tensorrt import use_engine

        info.update(use_engine(pipe, config, model_dir))
        return info
    if config.precision == "fp8":
        info["fp8_linear_layers"] = quantize_fp8(pipe.transformer)
    if config.runtime == "compile":
        compile_transformer(pipe.transformer, config.compile_mode)
        info["compile_mode"] = config.compile_mode
    return info
