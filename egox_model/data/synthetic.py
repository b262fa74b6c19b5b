"""Paired clips of the synthetic room (`egox_model.scene`): any number of seeds."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from egox_model.data.format import PairedClip, write_paired_clip, write_splits
from egox_model.scene import SceneConfig, render_scene

__all__ = ["synthetic_paired_clip", "write_synthetic_dataset"]

CAPTION = "a red ball rolls across a wooden table with objects in a room"


def synthetic_paired_clip(config: SceneConfig, name: str | None = None) -> PairedClip:
    """The rendered scene of `config` as a paired clip: exact exo depth, the ball as the exo
    dynamic mask and as ego object 1."""
    scene = render_scene(config)
    clip = scene.to_clip()
    clip.prompt = CAPTION
    return PairedClip(name=name or f"synthetic_{config.seed:05d}", clip=clip,
                      ego_rgb=scene.ego_rgb, ego_objects=scene.ego_dynamic_mask.astype("uint16"),
                      source={"kind": "synthetic", "seed": config.seed})


def write_synthetic_dataset(root: str | Path, seeds: Sequence[int], *,
                            val_seeds: Sequence[int] = (), config: SceneConfig = SceneConfig()
                            ) -> dict[str, list[str]]:
    """Render one clip per seed under ROOT/clips/ and write ROOT/splits.json ("train":
    `seeds`, "val": `val_seeds`); `config` gives everything but the seed. Returns the splits."""
    root = Path(root)
    splits: dict[str, list[str]] = {"train": [], "val": []}
    for split, split_seeds in (("train", seeds), ("val", val_seeds)):
        for seed in split_seeds:
            paired = synthetic_paired_clip(SceneConfig(**{**config.__dict__, "seed": seed}))
            write_paired_clip(root / "clips" / paired.name, paired)
            splits[split].append(paired.name)
    write_splits(root, splits)
    return splits
