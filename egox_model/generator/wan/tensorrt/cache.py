"""The engine cache: what an engine is keyed by, where its files live, and the model hash.

A TensorRT plan runs only on the GPU model (compute capability) and TensorRT version that
built it, for the weights, clip shape and precision it was built with. `EngineKey` holds all
of those; the plan's file name is derived from it and a JSON sidecar beside the plan records
it, so a plan that does not fit this GPU / TensorRT / model is refused with a message saying
which field differs and how to rebuild, instead of TensorRT's own deserialization error.

Layout of `engine_dir` (default ~/.cache/egox/engines):
    onnx/<model>-<shape>-<precision>/model.onnx (+ model.onnx.data)   GPU-independent
    <model>-<shape>-<precision>-<gpu>-sm<cc>-trt<version>.plan (+ .json)
    digests.json   content hashes of weight files, keyed by path, size and mtime
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from egox_model.errors import ModelLoadError
from egox_model.generator.wan.tensorrt.shape import ClipShape

__all__ = ["DEFAULT_ENGINE_DIR", "ENGINE_FORMAT", "EngineCache", "EngineKey", "model_hash",
           "model_stem"]

DEFAULT_ENGINE_DIR = Path("~/.cache/egox/engines")
#: Bumped whenever the exported graph changes for the same weights (export code, inputs).
ENGINE_FORMAT = 1
_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".json")


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "-", text).strip("-").lower()


def model_stem(model_hash: str, shape: ClipShape, precision: str,
               format: int = ENGINE_FORMAT) -> str:
    """The GPU-independent part of an engine's name (also the ONNX export's folder)."""
    return f"wan-{model_hash[:16]}-{shape.tag}-{precision}-f{format}"


@dataclass(frozen=True)
class EngineKey:
    """Everything a TensorRT plan depends on.

    gpu_name, compute_capability: of the GPU that built it ("NVIDIA H200", (9, 0));
    tensorrt_version: tensorrt.__version__; model_hash: `model_hash` of the weights + LoRA;
    shape: the static clip shape; precision: the dtype the graph computes in ("bfloat16").
    """

    gpu_name: str
    compute_capability: tuple[int, int]
    tensorrt_version: str
    model_hash: str
    shape: ClipShape
    precision: str
    format: int = ENGINE_FORMAT

    @property
    def model_stem(self) -> str:
        """The GPU-independent part of the name (the ONNX export's folder)."""
        return model_stem(self.model_hash, self.shape, self.precision, self.format)

    @property
    def stem(self) -> str:
        """The plan's file name without suffix."""
        major, minor = self.compute_capability
        return (f"{self.model_stem}-{_slug(self.gpu_name)}-sm{major}{minor}-"
                f"trt{_slug(self.tensorrt_version)}")

    def as_dict(self) -> dict:
        """JSON-ready fields."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> EngineKey:
        """Inverse of `as_dict`."""
        fields = dict(data)
        fields["compute_capability"] = tuple(fields["compute_capability"])
        fields["shape"] = ClipShape(**fields["shape"])
        return cls(**fields)

    def differences(self, other: EngineKey) -> list[str]:
        """Human-readable fields in which `other` (e.g. a plan's key) differs from this one."""
        labels = {"gpu_name": "GPU", "compute_capability": "compute capability",
                  "tensorrt_version": "TensorRT", "model_hash": "model + LoRA hash",
                  "shape": "clip shape", "precision": "precision", "format": "export format"}
        out = []
        for field, label in labels.items():
            mine, theirs = getattr(self, field), getattr(other, field)
            if field == "shape":
                mine, theirs = mine.tag, theirs.tag
            if mine != theirs:
                out.append(f"{label} {theirs!r} (here {mine!r})")
        return out


def _file_digest(path: Path, memo: dict) -> str:
    """sha256 of a file's contents, memoised by (size, mtime) in `memo`."""
    stat = path.stat()
    entry = memo.get(str(path))
    if entry and entry["size"] == stat.st_size and entry["mtime_ns"] == stat.st_mtime_ns:
        return entry["sha256"]
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 24), b""):
            digest.update(block)
    memo[str(path)] = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                       "sha256": digest.hexdigest()}
    return digest.hexdigest()


def model_hash(model_dir: Path, adapters: Sequence[tuple[str, Path, float]] = (),
               memo_path: Path | None = None) -> str:
    """sha256 over the transformer's config and weight files (contents) and each LoRA
    adapter's (name, file contents, fusing scale), in order: what the fused weights depend
    on. GGA settings are not in it: the GGA bias is an engine input.

    File hashes are memoised in `memo_path` (JSON) by path, size and mtime, so the 28 GB of
    the 14B model are read once, not at every start.
    """
    folder = Path(model_dir).expanduser() / "transformer"
    files = sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES) \
        if folder.is_dir() else []
    if not any(p.name == "config.json" for p in files):
        raise ModelLoadError(f"{folder} has no config.json; model_dir must hold a diffusers-"
                             "layout transformer")
    memo: dict = {}
    if memo_path is not None and memo_path.is_file():
        try:
            memo = json.loads(memo_path.read_text())
        except (OSError, json.JSONDecodeError):
            memo = {}
    digest = hashlib.sha256(f"egox-wan-engine:{ENGINE_FORMAT}".encode())
    for path in files:
        digest.update(f"{path.name}:{_file_digest(path.resolve(), memo)}\n".encode())
    for name, path, scale in adapters:
        lora = Path(path).expanduser()
        if lora.is_dir():
            lora = lora / "pytorch_lora_weights.safetensors"
        if not lora.is_file():
            raise ModelLoadError(f"LoRA file {str(lora)!r} does not exist")
        digest.update(f"lora:{name}:{_file_digest(lora.resolve(), memo)}:{scale!r}\n".encode())
    if memo_path is not None:
        memo_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = memo_path.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps(memo, indent=1))
        tmp.replace(memo_path)
    return digest.hexdigest()


class EngineCache:
    """The files of `root` (an engine_dir)."""

    def __init__(self, root: Path | str = "") -> None:
        self.root = Path(root or DEFAULT_ENGINE_DIR).expanduser()

    @property
    def digests(self) -> Path:
        """The weight-file hash memo."""
        return self.root / "digests.json"

    def onnx_path(self, model_hash: str, shape: ClipShape, precision: str) -> Path:
        """Where the ONNX export of a model, shape and precision goes (any GPU)."""
        return self.root / "onnx" / model_stem(model_hash, shape, precision) / "model.onnx"

    def plan_path(self, key: EngineKey) -> Path:
        """Where `key`'s plan goes."""
        return self.root / f"{key.stem}.plan"

    def save_key(self, key: EngineKey) -> None:
        """Write the sidecar recording `key` beside its plan."""
        self.plan_path(key).with_suffix(".json").write_text(json.dumps(key.as_dict(), indent=1))

    def read_key(self, plan: Path) -> EngineKey:
        """The key recorded beside `plan`."""
        sidecar = Path(plan).with_suffix(".json")
        try:
            return EngineKey.from_dict(json.loads(sidecar.read_text()))
        except (OSError, ValueError, TypeError, KeyError) as err:
            raise ModelLoadError(f"TensorRT engine {plan} has no readable key file {sidecar} "
                                 f"({err}); rebuild it with `egox export-trt ... --rebuild`"
                                 ) from err

    def keys(self) -> list[tuple[Path, EngineKey]]:
        """Every plan in the cache with its key (plans without a readable key skipped)."""
        out = []
        for plan in sorted(self.root.glob("*.plan")):
            try:
                out.append((plan, self.read_key(plan)))
            except ModelLoadError:
                continue
        return out

    def check_plan(self, plan: Path, key: EngineKey) -> Path:
        """`plan` if its recorded key is `key`; else ModelLoadError naming what differs."""
        built = self.read_key(plan)
        differences = key.differences(built)
        if differences:
            raise ModelLoadError(
                f"TensorRT engine {plan} does not fit here: built for "
                f"{'; '.join(differences)}. Plans run only on the GPU model and TensorRT "
                f"version that built them: rebuild with `egox export-trt "
                f"{key.shape.export_flags} --rebuild` (and the same --wan.* settings)")
        return plan

    def find(self, key: EngineKey) -> Path | None:
        """The cached plan of `key`, checked against its sidecar; None if there is none."""
        plan = self.plan_path(key)
        return self.check_plan(plan, key) if plan.is_file() else None

    def missing_message(self, key: EngineKey) -> str:
        """Why no plan fits `key`, naming the plans built elsewhere and the command to run."""
        same_model = [k for _, k in self.keys() if k.model_hash == key.model_hash
                      and k.shape == key.shape and k.precision == key.precision]
        elsewhere = ""
        if same_model:
            elsewhere = (" (engines of this model and shape exist for other setups: " +
                         "; ".join(", ".join(key.differences(k)) for k in same_model) +
                         "; plans do not move between GPU models or TensorRT versions)")
        return (f"no TensorRT engine in {self.root} for clip shape {key.shape.tag}, "
                f"{key.precision}, on {key.gpu_name} (sm {key.compute_capability[0]}."
                f"{key.compute_capability[1]}) with TensorRT {key.tensorrt_version}{elsewhere}; "
                f"build it with `egox export-trt {key.shape.export_flags}` and the same "
                f"--wan.* settings (model_dir, lora_path, lora_scale, dtype, engine_dir)")
