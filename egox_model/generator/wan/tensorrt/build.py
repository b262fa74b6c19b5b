"""`export_engine`: what `egox export-trt` does, from a WanConfig and a clip size to files.

1. hash the transformer's weight files and the LoRA (the cache key's model part);
2. load the transformer through the generator's loading code, load and fuse the LoRA;
3. export ONNX for the clip shape (reused when present, unless `rebuild`);
4. unless `onnx_only`: build the TensorRT plan for this GPU and TensorRT into the cache
   (reused when its key matches, unless `rebuild`).
"""
from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from egox_model.errors import ConfigError
from egox_model.generator.wan.config import WanConfig
from egox_model.generator.wan.tensorrt.cache import EngineCache, EngineKey, model_hash
from egox_model.generator.wan.tensorrt.engine import build_engine, gpu_identity, import_tensorrt
from egox_model.generator.wan.tensorrt.export import export_onnx
from egox_model.generator.wan.tensorrt.shape import ClipShape, image_tokens_of

__all__ = ["ExportResult", "adapter_files", "export_engine", "load_fused_transformer"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExportResult:
    """Where the export went; plan None with onnx_only; `built` lists what was (re)made."""

    onnx_path: Path
    plan_path: Path | None
    shape: ClipShape
    model_hash: str
    built: tuple[str, ...]


def load_fused_transformer(config: WanConfig, device: torch.device) -> torch.nn.Module:
    """The transformer of `config.model_dir` in `config.dtype` with every LoRA fused, as
    `build_pipeline` prepares it (same loading code), on `device`."""
    from egox_model.generator.wan.backend import load_adapters
    from egox_model.generator.wan.loading import load_components, resolve_dtype

    parts = load_components(Path(config.model_dir).expanduser(),
                            dtype=resolve_dtype(config.dtype), text_encoder=False)
    load_adapters(parts.transformer, config)
    return parts.transformer.to(device)


def adapter_files(config: WanConfig) -> list[tuple[str, Path, float]]:
    """(name, path, scale) of every LoRA fused into the transformer, for `model_hash`."""
    from egox_model.generator.wan.backend import adapters_of

    return [(name, path, scale) for name, path, scale, _ in adapters_of(config)]


def export_engine(config: WanConfig, frames: int, exo_hw: tuple[int, int],
                  ego_hw: tuple[int, int], *, onnx_only: bool = False,
                  rebuild: bool = False) -> ExportResult:
    """Export (and unless `onnx_only`, build) the engine of `config`'s model for one clip
    size: `frames` (4k+1), exo and ego (H, W) in pixels. Files go to `config.engine_dir`."""
    if not config.model_dir:
        raise ConfigError("is required to export an engine", key="wan.model_dir", value="")
    if config.precision != "bf16":
        raise ConfigError("FP8 inside TensorRT engines is not built here; use precision "
                          "'bf16' (the engine computes in `dtype`)", key="wan.precision",
                          value=config.precision)
    from egox_model.generator.wan.backend import resolve_device

    rebuild = rebuild or config.rebuild_engine
    model_dir = Path(config.model_dir).expanduser()
    shape = ClipShape.from_pixels(frames, exo_hw, ego_hw,
                                  image_tokens=image_tokens_of(model_dir))
    cache = EngineCache(config.engine_dir)
    digest = model_hash(model_dir, adapter_files(config), cache.digests)
    device = resolve_device(config.device)
    trt = None
    if not onnx_only:          # fail before the long export when TensorRT or the GPU is absent
        trt = import_tensorrt()
        gpu_identity(device)
    built = []
    onnx_path = cache.onnx_path(digest, shape, config.dtype)
    if rebuild or not onnx_path.is_file():
        transformer = load_fused_transformer(config, device)
        # into a fresh folder renamed into place: an interrupted export is never reused
        staging = onnx_path.parent.with_name(f"{onnx_path.parent.name}.tmp{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        export_onnx(transformer, shape, staging / onnx_path.name)
        del transformer
        shutil.rmtree(onnx_path.parent, ignore_errors=True)
        staging.replace(onnx_path.parent)
        built.append("onnx")
    else:
        log.info("reusing %s", onnx_path)
    plan = None
    if trt is not None:
        name, capability = gpu_identity(device)
        key = EngineKey(name, capability, trt.__version__, digest, shape, config.dtype)
        plan = None if rebuild else cache.find(key)
        if plan is None:
            with torch.cuda.device(device):
                plan = build_engine(onnx_path, cache.plan_path(key))
            cache.save_key(key)
            built.append("engine")
    return ExportResult(onnx_path, plan, shape, digest, tuple(built))
