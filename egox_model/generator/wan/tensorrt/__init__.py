"""Runtime 'tensorrt' of the `wan` backend: the transformer as TensorRT 11 engines.

`egox export-trt` (build.py) exports the transformer, LoRA fused, to ONNX for one static clip
shape, with GGA in its exportable form (processor.py: exo rows plain attention, ego rows
attention over all keys plus a bias that is a graph input, computed once per clip), and
builds a plan into the engine cache (cache.py: keyed by GPU, compute capability, TensorRT
version, model + LoRA hash, clip shape and precision). `use_engine`, called by
`apply_runtime`, puts an `EngineTransformer` (module.py) in place of the pipeline's
transformer; the VAE, text and image encoders stay in torch.

Engines are built by `egox export-trt`, never while generating: building one for the 14B
model takes tens of minutes and about twice its weights in memory, which a robot's first
clip should not silently pay. A clip shape without an engine is an error naming the command.
See docs/tensorrt.md.
"""
from __future__ import annotations

from pathlib import Path

from egox_model.errors import ConfigError, ModelLoadError
from egox_model.generator.wan.config import WanConfig
from egox_model.generator.wan.tensorrt.build import (ExportResult, adapter_files,
                                                     export_engine)
from egox_model.generator.wan.tensorrt.cache import EngineCache, EngineKey, model_hash
from egox_model.generator.wan.tensorrt.engine import (TensorRTEngine, build_engine,
                                                      gpu_identity, import_tensorrt)
from egox_model.generator.wan.tensorrt.export import export_onnx
from egox_model.generator.wan.tensorrt.module import EngineTransformer
from egox_model.generator.wan.tensorrt.processor import GGABiasInputProcessor, TokenGrid
from egox_model.generator.wan.tensorrt.shape import ClipShape, image_tokens_of

__all__ = ["ClipShape", "EngineCache", "EngineKey", "EngineTransformer", "ExportResult",
           "GGABiasInputProcessor", "TensorRTEngine", "TokenGrid", "build_engine",
           "export_engine", "export_onnx", "import_tensorrt", "model_hash", "use_engine"]

#: The default clip (docs/wan.md), named in the error when no engine exists at all.
_DEFAULT_PIXELS = (49, (448, 784), (448, 448))


def use_engine(pipe, config: WanConfig, model_dir: Path) -> dict:
    """Replace `pipe.transformer` by an `EngineTransformer` running this model's cached
    engines; returns what was found, for diagnostics.

    Raises ConfigError without tensorrt or a CUDA device, with rebuild_engine set (engines
    are built by `egox export-trt`) or with a step cache; ModelLoadError when the cache holds
    no engine of this model for this GPU and TensorRT version.
    """
    trt = import_tensorrt()
    if config.rebuild_engine:
        raise ConfigError("engines are built by `egox export-trt` (pass --rebuild there); "
                          "runtime 'tensorrt' only loads them", key="rebuild_engine",
                          value=True)
    if config.cache != "none":
        raise ConfigError("step caching hooks run inside the torch transformer, which an "
                          "engine replaces; use cache 'none' with runtime 'tensorrt'",
                          key="cache", value=config.cache)
    transformer = pipe.transformer
    device = pipe._execution_device
    gpu, capability = gpu_identity(device)
    cache = EngineCache(config.engine_dir)
    digest = model_hash(Path(model_dir), adapter_files(config), cache.digests)

    def key_for(shape: ClipShape) -> EngineKey:
        return EngineKey(gpu, capability, trt.__version__, digest, shape, config.dtype)

    mine = [key for _, key in cache.keys() if key == key_for(key.shape)]
    if not mine:
        frames, exo_hw, ego_hw = _DEFAULT_PIXELS
        default = ClipShape.from_pixels(frames, exo_hw, ego_hw,
                                        image_tokens=image_tokens_of(Path(model_dir)))
        raise ModelLoadError(cache.missing_message(key_for(default)))
    stand_in = EngineTransformer(transformer.config, transformer.dtype, device, cache,
                                 key_for, config.gga)
    pipe.register_modules(transformer=stand_in)   # the torch transformer is let go
    del transformer
    import torch
    torch.cuda.empty_cache()
    return {"engine_dir": str(cache.root), "model_hash": digest[:16],
            "tensorrt": trt.__version__, "engines": [key.shape.tag for key in mine]}
