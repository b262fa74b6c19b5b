"""Import the official EgoX release's training meta format into paired clips.

The release (DAVIAN-Robotics/EgoX, `core/finetune/datasets/wan_dataset.py`) reads one JSON
object, `{KEY: entry, ...}`, each entry

    exo_video_path, ego_video_path, ego_prior_path   video files (exo, ego ground truth,
                                                     rendered ego prior)
    prompt, take_name                                caption; Ego-Exo4D take
    camera_extrinsics   3x4 world-to-camera [R | t] of the static exo camera
    camera_intrinsics   3x3 K of the exo video
    ego_extrinsics      F x 3x4 world-to-camera of the ego camera, one per frame
    ego_intrinsics      3x3 K of the ego video
    (vipe_results_path, best_camera: ViPE's depth intrinsics; not needed here)

and the exo depth per frame as DATA_ROOT/depth_maps/<take_name>/*.npy ((H, W) metres,
sorted by file name). Relative video paths are resolved against `base_dir` (the release runs
from its repository root). Depth maps of another size than the exo video are resized
nearest-neighbour (same camera, other resolution). The release's GGA code rotates its ego
rays by 90 degrees (Aria videos stored rotated): give `ego_rotation_k` (np.rot90 turns) to
turn such ego frames upright to match `ego_extrinsics`.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np

from egox_model.clip import Clip
from egox_model.data.format import PairedClip, add_to_split, write_paired_clip
from egox_model.errors import InputError
from egox_model.geometry.camera import Intrinsics
from egox_model.video import read_video

__all__ = ["official_paired_clip", "import_official"]

_KEYS = ("exo_video_path", "ego_video_path", "prompt", "take_name", "camera_extrinsics",
         "camera_intrinsics", "ego_extrinsics", "ego_intrinsics")


def _w2c_to_c2w(w2c: np.ndarray, name: str) -> np.ndarray:
    """(..., 3, 4) world-to-camera -> (..., 4, 4) camera-to-world."""
    w2c = np.asarray(w2c, dtype=np.float64)
    if w2c.shape[-2:] != (3, 4):
        raise InputError(f"{name} must be 3x4 world-to-camera matrices, got shape {w2c.shape}")
    full = np.zeros(w2c.shape[:-2] + (4, 4))
    full[..., :3, :] = w2c
    full[..., 3, 3] = 1.0
    return np.linalg.inv(full)


def _resolve(path: str, base_dir: Path) -> Path:
    p = Path(path).expanduser()
    return p if p.is_absolute() else base_dir / p


def _depth_maps(folder: Path, num_frames: int, height: int, width: int) -> np.ndarray | None:
    files = sorted(folder.glob("*.npy")) if folder.is_dir() else []
    if not files:
        return None
    if len(files) < num_frames:
        raise InputError(f"{folder} has {len(files)} depth maps but the clip has {num_frames} "
                         "frames")
    maps = [np.load(f).astype(np.float32) for f in files[:num_frames]]
    return np.stack([m if m.shape == (height, width) else
                     cv2.resize(m, (width, height), interpolation=cv2.INTER_NEAREST)
                     for m in maps])


def official_paired_clip(key: str, entry: dict, *, base_dir: Path, data_root: Path,
                         max_frames: int | None = None, ego_rotation_k: int = 0) -> PairedClip:
    """One meta entry as a `PairedClip` (module docstring); frames = the shortest of the
    videos, the ego poses and the depth maps (and `max_frames`)."""
    missing = [k for k in _KEYS if k not in entry]
    if missing:
        raise InputError(f"official meta entry {key!r} lacks {missing}")
    exo, fps = read_video(_resolve(entry["exo_video_path"], base_dir))
    ego, _ = read_video(_resolve(entry["ego_video_path"], base_dir))
    ego = np.ascontiguousarray(np.rot90(ego, ego_rotation_k, axes=(1, 2)))
    prior = None
    if entry.get("ego_prior_path"):
        prior_path = _resolve(entry["ego_prior_path"], base_dir)
        prior = np.ascontiguousarray(np.rot90(read_video(prior_path)[0], ego_rotation_k,
                                              axes=(1, 2)))
    ego_c2w = _w2c_to_c2w(entry["ego_extrinsics"], "ego_extrinsics")
    if ego_c2w.ndim != 3:
        raise InputError(f"ego_extrinsics of {key!r} must be F x 3x4 (one per frame)")
    lengths = [len(exo), len(ego), len(ego_c2w)] + ([len(prior)] if prior is not None else [])
    if max_frames is not None:
        lengths.append(max_frames)
    F = min(lengths)
    (H, W), (He, We) = exo.shape[1:3], ego.shape[1:3]
    depth = _depth_maps(data_root / "depth_maps" / entry["take_name"], F, H, W)
    exo_c2w = _w2c_to_c2w(entry["camera_extrinsics"], "camera_extrinsics")
    clip = Clip(exo_rgb=exo[:F], exo_K=Intrinsics.from_matrix(entry["camera_intrinsics"], W, H),
                exo_c2w=np.repeat(exo_c2w[None], F, axis=0),
                ego_K=Intrinsics.from_matrix(entry["ego_intrinsics"], We, He),
                ego_c2w=ego_c2w[:F], exo_depth_m=depth, prompt=str(entry["prompt"]),
                fps=fps or 30.0,
                stamps_ns=np.round(np.arange(F) * 1e9 / (fps or 30.0)).astype(np.int64))
    name = re.sub(r"[^A-Za-z0-9._-]", "_", Path(key).stem) or "clip"
    return PairedClip(name=name, clip=clip, ego_rgb=ego[:F],
                      prior_rgb=None if prior is None else prior[:F],
                      source={"kind": "egox-official", "key": key,
                              "take_name": entry["take_name"]})


def import_official(meta_json: str | Path, out_root: str | Path, *,
                    base_dir: str | Path | None = None, data_root: str | Path | None = None,
                    split: str = "train", max_frames: int | None = None,
                    ego_rotation_k: int = 0) -> list[str]:
    """Write every entry of an official meta.json as a clip under OUT_ROOT/clips/ and list
    them as `split` in OUT_ROOT/splits.json (other splits kept). base_dir and data_root
    default to the meta file's folder. Returns the clip names."""
    meta_json = Path(meta_json)
    try:
        meta = json.loads(meta_json.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise InputError(f"cannot read the official meta file {meta_json}: {err}") from err
    if not isinstance(meta, dict):
        raise InputError(f"{meta_json} must hold a JSON object KEY -> entry")
    base = Path(base_dir) if base_dir is not None else meta_json.parent
    data = Path(data_root) if data_root is not None else meta_json.parent
    out_root = Path(out_root)
    names = []
    for key, entry in meta.items():
        paired = official_paired_clip(key, entry, base_dir=base, data_root=data,
                                      max_frames=max_frames, ego_rotation_k=ego_rotation_k)
        write_paired_clip(out_root / "clips" / paired.name, paired)
        names.append(paired.name)
    add_to_split(out_root, split, names)
    return names
