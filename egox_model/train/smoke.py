"""`egox train --smoke-test`: the whole training path on the CPU in well under a minute.

A tiny random-weight Wan 2.1 I2V directory (`generator.wan.tiny`) and synthetic paired clips
(`data.synthetic`, 5 frames, exo 32x48, ego 32x32) are written under OUT, then `train` runs
on them with a rank-32 LoRA, a high learning rate and two fixed draws (`overfit_draws` 2):
an overfitting check, so the loss must fall (fresh draws barely move it, as the tiny
model's LoRA on attention cannot learn the per-token noise; see docs/training.md).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from egox_model.data.synthetic import write_synthetic_dataset
from egox_model.generator.wan.tiny import save_tiny_model_dir
from egox_model.scene import SceneConfig
from egox_model.train.config import DataOptions, LoraOptions, OptimOptions, TrainConfig
from egox_model.train.trainer import TrainResult, train

__all__ = ["SMOKE_SCENE", "smoke_config", "smoke_test"]

#: The synthetic clips of the smoke test: 5 frames, exo 32x48, ego 32x32 (multiples of 16).
SMOKE_SCENE = SceneConfig(num_frames=5, exo_size=(32, 48), ego_size=(32, 32))


def smoke_config(model_dir: Path, data_root: Path, *, steps: int = 60,
                 **changes) -> TrainConfig:
    """A TrainConfig for the tiny model and the smoke clips (float32 on the CPU); `changes`
    replace top-level fields."""
    config = TrainConfig(
        model_dir=str(model_dir),
        data=DataOptions(root=str(data_root), frames=SMOKE_SCENE.num_frames,
                         height=SMOKE_SCENE.exo_size[0], exo_width=SMOKE_SCENE.exo_size[1],
                         ego_width=SMOKE_SCENE.ego_size[1]),
        optim=OptimOptions(steps=steps, lr=5e-3, warmup_steps=5),
        lora=LoraOptions(rank=32, alpha=32.0), dtype="float32", save_every=20,
        overfit_draws=2, device="cpu")
    return replace(config, **changes)


def smoke_test(out_dir: str | Path, *, seeds: tuple[int, ...] = (0, 1), steps: int = 60,
               progress: bool = True) -> TrainResult:
    """Write the tiny model and the clips of `seeds` under OUT/tiny_model and OUT/data
    (reused when present), then train from scratch into OUT (metrics.jsonl, ...)."""
    out_dir = Path(out_dir)
    model_dir, data_root = out_dir / "tiny_model", out_dir / "data"
    if not (model_dir / "transformer").is_dir():
        save_tiny_model_dir(model_dir)
    if not (data_root / "splits.json").is_file():
        write_synthetic_dataset(data_root, seeds, config=SMOKE_SCENE)
    return train(smoke_config(model_dir, data_root, steps=steps), out_dir, resume=False,
                 progress=progress)
