"""Resumable training checkpoints: OUT/checkpoints/step_NNNNNNN/.

    lora.safetensors   the trainable (LoRA) parameters under their module names, float32
    optimizer.pt       AdamW state (moments, step counts), torch.save
    state.pt           {"step", "lr_scheduler", "rng": {python, numpy, torch, cuda}}
    config.json        the TrainConfig the run was started with (for reading, not checked)

A checkpoint directory is written under a temporary name and renamed when complete, so
`latest_checkpoint` never returns a half-written one.
"""
from __future__ import annotations

import json
import random
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from egox_model.errors import InputError

__all__ = ["latest_checkpoint", "load_checkpoint", "save_checkpoint"]

_PREFIX = "step_"


def _trainable(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


def save_checkpoint(root: Path, step: int, model: torch.nn.Module, optimizer, lr_scheduler,
                    config, keep: int = 0) -> Path:
    """Write the checkpoint after `step` optimizer steps; keep the newest `keep` (0 = all)."""
    root = Path(root)
    final = root / f"{_PREFIX}{step:07d}"
    partial = root / f".{final.name}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    save_file({k: v.detach().float().cpu().contiguous() for k, v in _trainable(model).items()},
              str(partial / "lora.safetensors"))
    torch.save(optimizer.state_dict(), partial / "optimizer.pt")
    rng = {"python": random.getstate(), "numpy": np.random.get_state(),
           "torch": torch.get_rng_state(),
           "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []}
    torch.save({"step": step, "lr_scheduler": lr_scheduler.state_dict(), "rng": rng},
               partial / "state.pt")
    (partial / "config.json").write_text(json.dumps(asdict(config), indent=1))
    shutil.rmtree(final, ignore_errors=True)
    partial.rename(final)
    if keep:
        for old in sorted(root.glob(f"{_PREFIX}*"))[:-keep]:
            shutil.rmtree(old)
    return final


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint under `root`, or None."""
    found = sorted(Path(root).glob(f"{_PREFIX}*")) if Path(root).is_dir() else []
    return found[-1] if found else None


def load_checkpoint(path: Path, model: torch.nn.Module, optimizer, lr_scheduler) -> int:
    """Restore parameters, optimizer, LR schedule and RNG states; returns the step."""
    path = Path(path)
    if not (path / "state.pt").is_file():
        raise InputError(f"{path} is not a training checkpoint (no state.pt)")
    params = _trainable(model)
    saved = load_file(str(path / "lora.safetensors"))
    if set(saved) != set(params):
        missing, extra = sorted(set(params) - set(saved)), sorted(set(saved) - set(params))
        raise InputError(f"checkpoint {path} does not fit this model (LoRA rank or targets "
                         f"differ): missing {missing[:3]}, unexpected {extra[:3]}")
    with torch.no_grad():
        for name, p in params.items():
            p.copy_(saved[name])
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", map_location="cpu",
                                         weights_only=False))
    state = torch.load(path / "state.pt", map_location="cpu", weights_only=False)
    lr_scheduler.load_state_dict(state["lr_scheduler"])
    rng = state["rng"]
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return int(state["step"])
