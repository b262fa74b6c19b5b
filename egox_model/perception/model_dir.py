"""Local model directories of the perception models: checks, licences, device and dtype.

Nothing is downloaded (`local_files_only=True`). Every problem raises ModelLoadError naming
the setting, the directory and the file expected, before any weight is read.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from egox_model.errors import ModelLoadError

__all__ = ["WEIGHT_FILES", "check_model_dir", "licence_of", "load_pretrained",
           "read_json", "resolve_device", "resolve_dtype"]

#: Any of these holds the weights of a transformers model directory.
WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                "pytorch_model.bin.index.json")


def read_json(path: Path) -> dict:
    """A JSON file as a dict, or ModelLoadError."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ModelLoadError(f"cannot read {path}: {err}") from err
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path} must hold a JSON object")
    return data


def check_model_dir(model_dir: str | Path, setting: str, model_types: dict[str, str],
                    *, processor_file: str = "preprocessor_config.json") -> dict:
    """Check that `model_dir` (the value of `setting`) is a transformers directory of one of
    `model_types` (model_type -> what it is, for the message): config.json, a weight file
    and `processor_file`. Returns config.json's contents."""
    path = Path(model_dir)
    wanted = " or ".join(model_types.values())
    if not path.is_dir():
        raise ModelLoadError(f"{setting}={str(model_dir)!r} is not a directory; point it at a "
                             f"local {wanted} model directory (nothing is downloaded)")
    missing = [name for name in ("config.json", processor_file) if not (path / name).is_file()]
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        missing.append(f"weights ({' or '.join(WEIGHT_FILES[::2])})")
    if missing:
        raise ModelLoadError(f"{setting}={str(model_dir)!r} lacks {', '.join(missing)}; it must "
                             f"be a {wanted} directory as saved by save_pretrained")
    config = read_json(path / "config.json")
    model_type = config.get("model_type")
    if model_type not in model_types:
        raise ModelLoadError(f"{setting}={str(model_dir)!r}: config.json has model_type "
                             f"{model_type!r}, expected {' or '.join(map(repr, model_types))} "
                             f"({wanted})")
    return config


def load_pretrained(cls: type, model_dir: str | Path, setting: str, **kwargs):
    """`cls.from_pretrained(model_dir, local_files_only=True, **kwargs)`; errors as
    ModelLoadError naming the setting."""
    try:
        return cls.from_pretrained(str(model_dir), local_files_only=True, **kwargs)
    except (OSError, ValueError, RuntimeError, KeyError, TypeError) as err:
        raise ModelLoadError(f"{setting}={str(model_dir)!r}: cannot load {cls.__name__}: "
                             f"{err}") from err


_DA_SIZES = {384: "Small", 768: "Base", 1024: "Large", 1536: "Giant"}


def licence_of(model_dir: str | Path, config: dict) -> str:
    """The weights' licence: the model card's `license:` when the directory has a README.md
    with one, else what is known of the architecture (Depth Anything V2 by backbone width)."""
    readme = Path(model_dir) / "README.md"
    if readme.is_file():
        match = re.search(r"^licen[cs]e:\s*(\S+)", readme.read_text(errors="replace"),
                          re.MULTILINE)
        if match:
            return f"{match.group(1)} (model card)"
    model_type = config.get("model_type")
    if model_type in ("depth_anything", "prompt_depth_anything"):
        width = (config.get("backbone_config") or {}).get("hidden_size")
        size = _DA_SIZES.get(width)
        if size == "Small":
            return "apache-2.0 (Depth Anything V2 Small; check the model card)"
        if size is not None:
            return f"cc-by-nc-4.0 (Depth Anything V2 {size}: non-commercial use only)"
        return f"unknown (Depth Anything with backbone width {width}: check its model card)"
    if model_type == "depth_pro":
        return "apple-amlr (Apple research licence: research use only; check the model card)"
    if model_type in ("sam3_video", "sam3"):
        return "SAM licence (Meta; check the model card)"
    return f"unknown ({model_type}: check the model card)"


def resolve_device(name: str) -> torch.device:
    """'auto' -> cuda when present, else cpu; 'cuda' without a GPU is a ModelLoadError."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModelLoadError(f"perception.device={name!r} but torch sees no CUDA device; use "
                             "'auto' or 'cpu'")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto' -> bfloat16 on GPU, float32 on CPU; else the named dtype."""
    if name == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    return getattr(torch, name)
