"""TensorRT 11: build a serialized plan from the ONNX export, and run it on torch CUDA tensors.

`tensorrt` is imported lazily (`import_tensorrt`), so everything else here imports and runs
without it. TensorRT 11 networks are always strongly typed: there are no FP16/BF16 builder
flags; each tensor has the type the ONNX graph gives it (the export is in the transformer's
dtype). Inputs and outputs are bound by name (`set_tensor_address`) to torch tensors and the
plan runs on torch's current CUDA stream (`execute_async_v3`), so no copies are made and the
pipeline's own kernels order around it.
"""
from __future__ import annotations

import logging
import os
from pathlib import Path

import torch

from egox_model.errors import ConfigError, InputError, ModelLoadError

__all__ = ["TENSORRT_INSTALL", "TensorRTEngine", "build_engine", "gpu_identity",
           "import_tensorrt"]

TENSORRT_INSTALL = "pip install tensorrt-cu13==11.4.0.106"
log = logging.getLogger(__name__)


def import_tensorrt():
    """The `tensorrt` module, or a ConfigError naming the install command."""
    try:
        import tensorrt
    except ImportError as err:
        raise ConfigError(f"runtime 'tensorrt' needs the tensorrt package ({TENSORRT_INSTALL} "
                          f"on a CUDA machine); importing it failed: {err}",
                          key="runtime", value="tensorrt") from err
    return tensorrt


def gpu_identity(device: torch.device | str) -> tuple[str, tuple[int, int]]:
    """(name, compute capability) of a CUDA device; ConfigError for any other device."""
    device = torch.device(device)
    if device.type != "cuda" or not torch.cuda.is_available():
        raise ConfigError(f"needs a CUDA GPU; the transformer is on {device}",
                          key="runtime", value="tensorrt")
    return torch.cuda.get_device_name(device), tuple(torch.cuda.get_device_capability(device))


class _Logger:
    """TensorRT's logger at WARNING, created once per process (TensorRT keeps one)."""

    instance = None

    @classmethod
    def get(cls, trt):
        if cls.instance is None:
            cls.instance = trt.Logger(trt.Logger.WARNING)
        return cls.instance


def build_engine(onnx_path: Path, plan_path: Path, *, workspace_gib: float | None = None,
                 optimization_level: int | None = None) -> Path:
    """Parse `onnx_path` (external data beside it) and write the serialized plan to
    `plan_path` (atomically). Returns `plan_path`.

    workspace_gib bounds TensorRT's scratch memory (default: all free GPU memory);
    optimization_level 0-5 (TensorRT's default 3) trades build time for kernel search.
    """
    trt = import_tensorrt()
    logger = _Logger.get(trt)
    builder = trt.Builder(logger)
    # Strongly typed is the only mode in TensorRT 11 (the flag is kept there, and ignored, for
    # compatibility); on TensorRT 10 it selects the same behaviour.
    flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise ModelLoadError(f"TensorRT cannot parse {onnx_path}: " + "; ".join(errors[:5]))
    config = builder.create_builder_config()
    if workspace_gib is not None:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * 2**30))
    if optimization_level is not None:
        config.builder_optimization_level = optimization_level
    log.info("building TensorRT %s engine from %s (%d layers); this takes minutes",
             trt.__version__, onnx_path, network.num_layers)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ModelLoadError(f"TensorRT could not build an engine from {onnx_path}; its log "
                             "above says why (often: not enough GPU memory for the workspace)")
    plan_path = Path(plan_path)
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = plan_path.with_suffix(f".tmp{os.getpid()}")
    with tmp.open("wb") as f:
        f.write(memoryview(plan))
    tmp.replace(plan_path)
    return plan_path


def _torch_dtype(trt, dtype) -> torch.dtype:
    table = {"FLOAT": torch.float32, "HALF": torch.float16, "BF16": torch.bfloat16,
             "INT32": torch.int32, "INT64": torch.int64, "BOOL": torch.bool,
             "UINT8": torch.uint8, "INT8": torch.int8}
    for name, torch_dtype in table.items():
        if dtype == getattr(trt.DataType, name, None):
            return torch_dtype
    raise ModelLoadError(f"TensorRT engine has an I/O tensor of type {dtype}, which this "
                         "runtime does not bind")


class TensorRTEngine:
    """A deserialized plan with one execution context, called with torch CUDA tensors.

    `engine(**inputs)` -> {output name: tensor}; inputs must have the plan's shapes and dtypes.
    """

    def __init__(self, plan_path: Path, device: torch.device | str) -> None:
        trt = import_tensorrt()
        self.device, self.path = torch.device(device), Path(plan_path)
        self._runtime = trt.Runtime(_Logger.get(trt))
        with torch.cuda.device(self.device):
            self.engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
            if self.engine is None:
                raise ModelLoadError(
                    f"TensorRT {trt.__version__} cannot load {self.path} (its log above says "
                    "why): it was built by another TensorRT version or for another GPU; "
                    "rebuild it with `egox export-trt ... --rebuild`")
            self.context = self.engine.create_execution_context()
        self.inputs: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
        self.outputs: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            spec = (tuple(self.engine.get_tensor_shape(name)),
                    _torch_dtype(trt, self.engine.get_tensor_dtype(name)))
            is_input = self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            (self.inputs if is_input else self.outputs)[name] = spec

    def __call__(self, **tensors: torch.Tensor) -> dict[str, torch.Tensor]:
        if set(tensors) != set(self.inputs):
            raise InputError(f"engine {self.path.name} takes {sorted(self.inputs)}, got "
                             f"{sorted(tensors)}")
        keep = []                # converted inputs live until the engine is enqueued
        for name, (shape, dtype) in self.inputs.items():
            x = tensors[name]
            if tuple(x.shape) != shape:
                raise InputError(f"engine input {name} must be {shape}, got {tuple(x.shape)}")
            x = x.to(self.device, dtype).contiguous()
            keep.append(x)
            self.context.set_tensor_address(name, x.data_ptr())
        outputs = {name: torch.empty(shape, dtype=dtype, device=self.device)
                   for name, (shape, dtype) in self.outputs.items()}
        for name, x in outputs.items():
            self.context.set_tensor_address(name, x.data_ptr())
        stream = torch.cuda.current_stream(self.device)
        if not self.context.execute_async_v3(stream.cuda_stream):
            raise RuntimeError(f"TensorRT engine {self.path.name} failed to run (see its log)")
        # Tensors freed after this return are reused only by later work on this stream.
        return outputs
