"""The paired-clip format: exo video + real ego video of one moment, for training and eval.

A *dataset root* holds one directory per clip and an optional split file:

    ROOT/splits.json        {"train": ["name", ...], "val": [...], ...}; without it every
                            clip directory is in split "train"
    ROOT/clips/NAME/        one paired clip (NAME: letters, digits, "._-")

A *clip directory* (written by `write_paired_clip`, read by `read_paired_clip`):

    meta.json      {"format": "egox-paired-clip", "version": 1,
                    "name": NAME, "caption": str, "fps": float, "num_frames": F,
                    "exo": {"width": W, "height": H, "K": 3x3, "c2w": F x 4x4},
                    "ego": {"width": W_e, "height": H_e, "K": 3x3, "c2w": F x 4x4},
                    "stamps_ns": F ints (stamp of exo frame f) or null,
                    "source": {free-form provenance: "kind" ("synthetic", "rosbag",
                               "egox-official"), seed, bag path, take name, ...}}
    exo.mp4        F exo frames, H x W, RGB, H.264 at `fps`
    ego.mp4        F ground-truth ego frames, H_e x W_e (frame f is simultaneous with exo f)
    prior.mp4      optional: F ego-prior frames H_e x W_e rendered elsewhere (the official
                   release's `ego_Prior.mp4`); without it preprocessing renders the prior from
                   the exo depth with egox's own renderer
    exo_depth.npz  optional: `depth_m` (F, H, W) float32, exo z-depth in metres (0 = invalid)
    masks.npz      optional: `exo_dynamic` (F, H, W) bool, moving-object pixels of the exo
                   view; `ego_objects` (F, H_e, W_e) uint16 object ids in the ego ground
                   truth (0 = background), for the object IoU / location-error metrics

Cameras: K is the pinhole matrix (pixels, centres at integers) of the stored frames, which are
always undistorted (writers undistort fisheye / plumb-bob views with `CameraModel.undistort`);
c2w are camera-to-world 4x4 in one world frame, metres, OpenCV optical axes (x right, y down,
z forward), one per frame for both cameras. Sizes are free here: preprocessing resizes to the
model's resolution. Videos are lossy (H.264, ~40 dB PSNR on the synthetic scene); depth, masks
and cameras are exact.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from egox_model.clip import Clip
from egox_model.errors import InputError
from egox_model.geometry.camera import Intrinsics
from egox_model.validation import require_shape
from egox_model.video import read_video, write_video

__all__ = ["FORMAT", "VERSION", "PairedClip", "add_to_split", "clip_dirs", "read_paired_clip",
           "read_splits", "write_paired_clip", "write_splits"]

FORMAT, VERSION = "egox-paired-clip", 1
_NAME = re.compile(r"^[A-Za-z0-9._-]+$")


@dataclass
class PairedClip:
    """One paired clip in memory: the generator's input `clip` and what it should produce.

    ego_rgb (F, H_e, W_e, 3) uint8 is the real ego video, with H_e x W_e = clip.ego_K's size;
    prior_rgb the same shape or None; ego_objects (F, H_e, W_e) uint16 or None.
    """

    name: str
    clip: Clip
    ego_rgb: np.ndarray
    prior_rgb: np.ndarray | None = None
    ego_objects: np.ndarray | None = None
    source: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise InputError(f"clip name {self.name!r} may only hold letters, digits and "
                             "'._-'")
        F, k = self.clip.num_frames, self.clip.ego_K
        ego_shape = (F, k.height, k.width)
        self.ego_rgb = np.asarray(self.ego_rgb)
        require_shape("ego_rgb", self.ego_rgb, ego_shape + (3,))
        if self.ego_rgb.dtype != np.uint8:
            raise InputError(f"ego_rgb must be uint8 RGB, got dtype {self.ego_rgb.dtype}")
        if self.prior_rgb is not None:
            self.prior_rgb = np.asarray(self.prior_rgb, dtype=np.uint8)
            require_shape("prior_rgb", self.prior_rgb, ego_shape + (3,))
        if self.ego_objects is not None:
            self.ego_objects = np.asarray(self.ego_objects, dtype=np.uint16)
            require_shape("ego_objects", self.ego_objects, ego_shape)


def _camera_json(K: Intrinsics, c2w: np.ndarray) -> dict:
    return {"width": K.width, "height": K.height, "K": K.K.tolist(),
            "c2w": np.asarray(c2w, dtype=np.float64).tolist()}


def write_paired_clip(clip_dir: str | Path, paired: PairedClip) -> Path:
    """Write `paired` as a clip directory (module docstring); returns its path.

    Exo depth is taken from clip.exo_depth_m (D_m / D_v estimates are not stored); the exo
    dynamic mask from clip.dynamic_mask. An existing directory is refused.
    """
    clip_dir, clip = Path(clip_dir), paired.clip
    if clip_dir.exists():
        raise InputError(f"clip directory {clip_dir} already exists; choose a new one")
    clip_dir.mkdir(parents=True)
    meta = {"format": FORMAT, "version": VERSION, "name": paired.name, "caption": clip.prompt,
            "fps": float(clip.fps), "num_frames": clip.num_frames,
            "exo": _camera_json(clip.exo_K, clip.exo_c2w),
            "ego": _camera_json(clip.ego_K, clip.ego_c2w),
            "stamps_ns": None if clip.stamps_ns is None else clip.stamps_ns.tolist(),
            "source": paired.source}
    (clip_dir / "meta.json").write_text(json.dumps(meta, indent=1))
    write_video(clip_dir / "exo.mp4", clip.exo_rgb, clip.fps)
    write_video(clip_dir / "ego.mp4", paired.ego_rgb, clip.fps)
    if paired.prior_rgb is not None:
        write_video(clip_dir / "prior.mp4", paired.prior_rgb, clip.fps)
    if clip.exo_depth_m is not None:
        np.savez_compressed(clip_dir / "exo_depth.npz", depth_m=clip.exo_depth_m)
    masks = {}
    if clip.dynamic_mask is not None:
        masks["exo_dynamic"] = clip.dynamic_mask
    if paired.ego_objects is not None:
        masks["ego_objects"] = paired.ego_objects
    if masks:
        np.savez_compressed(clip_dir / "masks.npz", **masks)
    return clip_dir


def _read_meta(clip_dir: Path) -> dict:
    path = clip_dir / "meta.json"
    if not path.is_file():
        raise InputError(f"{clip_dir} is not a paired clip: it has no meta.json")
    try:
        meta = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise InputError(f"{path} is not valid JSON: {err}") from err
    if meta.get("format") != FORMAT or meta.get("version") != VERSION:
        raise InputError(f"{path} has format {meta.get('format')!r} version "
                         f"{meta.get('version')!r}; expected {FORMAT!r} version {VERSION}")
    return meta


def _camera(meta: dict, which: str) -> tuple[Intrinsics, np.ndarray]:
    cam = meta[which]
    return (Intrinsics.from_matrix(cam["K"], cam["width"], cam["height"]),
            np.asarray(cam["c2w"], dtype=np.float64))


def _read_frames(path: Path, num_frames: int, K: Intrinsics) -> np.ndarray:
    """Frames of a stored video, without the odd-size padding `write_video` adds."""
    frames = read_video(path)[0][:, :K.height, :K.width]
    if len(frames) != num_frames:
        raise InputError(f"{path} has {len(frames)} frames but meta.json says {num_frames}")
    return frames


def read_paired_clip(clip_dir: str | Path) -> PairedClip:
    """Read a clip directory (module docstring) back into a `PairedClip`."""
    clip_dir = Path(clip_dir)
    meta = _read_meta(clip_dir)
    F = int(meta["num_frames"])
    exo_K, exo_c2w = _camera(meta, "exo")
    ego_K, ego_c2w = _camera(meta, "ego")
    extra: dict = {}
    if (clip_dir / "exo_depth.npz").is_file():
        with np.load(clip_dir / "exo_depth.npz") as data:
            extra["exo_depth_m"] = data["depth_m"]
    masks: dict = {}
    if (clip_dir / "masks.npz").is_file():
        with np.load(clip_dir / "masks.npz") as data:
            masks = {k: data[k] for k in data.files}
    if "exo_dynamic" in masks:
        extra["dynamic_mask"] = masks["exo_dynamic"]
    stamps = meta.get("stamps_ns")
    clip = Clip(exo_rgb=_read_frames(clip_dir / "exo.mp4", F, exo_K), exo_K=exo_K,
                exo_c2w=exo_c2w, ego_K=ego_K, ego_c2w=ego_c2w,
                stamps_ns=None if stamps is None else np.asarray(stamps, dtype=np.int64),
                prompt=meta.get("caption", ""), fps=float(meta["fps"]),
                meta={"paired_clip": str(clip_dir)}, **extra)
    prior_path = clip_dir / "prior.mp4"
    return PairedClip(name=meta["name"], clip=clip,
                      ego_rgb=_read_frames(clip_dir / "ego.mp4", F, ego_K),
                      prior_rgb=(_read_frames(prior_path, F, ego_K) if prior_path.is_file()
                                 else None),
                      ego_objects=masks.get("ego_objects"), source=meta.get("source", {}))


def write_splits(root: str | Path, splits: dict[str, list[str]]) -> Path:
    """Write ROOT/splits.json; every named clip must exist under ROOT/clips/."""
    root = Path(root)
    for split, names in splits.items():
        missing = [n for n in names if not (root / "clips" / n / "meta.json").is_file()]
        if missing:
            raise InputError(f"split {split!r} names clips missing under {root / 'clips'}: "
                             f"{missing}")
    path = root / "splits.json"
    path.write_text(json.dumps(splits, indent=1))
    return path


def add_to_split(root: str | Path, split: str, names: list[str]) -> dict[str, list[str]]:
    """Append clip names to `split` of ROOT/splits.json (created if absent, other splits
    kept); returns the splits written."""
    root = Path(root)
    (root / "clips").mkdir(parents=True, exist_ok=True)
    path = root / "splits.json"
    splits = read_splits(root) if path.is_file() else {}
    splits[split] = splits.get(split, []) + [n for n in names if n not in splits.get(split, [])]
    write_splits(root, splits)
    return splits


def read_splits(root: str | Path) -> dict[str, list[str]]:
    """Split name -> clip names of a dataset root (no splits.json: all clips are "train")."""
    root = Path(root)
    if not (root / "clips").is_dir():
        raise InputError(f"{root} is not a paired-clip dataset root: it has no clips/ folder")
    path = root / "splits.json"
    if not path.is_file():
        return {"train": sorted(p.name for p in (root / "clips").iterdir()
                                if (p / "meta.json").is_file())}
    try:
        return {k: list(v) for k, v in json.loads(path.read_text()).items()}
    except (json.JSONDecodeError, AttributeError) as err:
        raise InputError(f"{path} must be a JSON object of split -> clip names: {err}") from err


def clip_dirs(root: str | Path, split: str = "train") -> list[Path]:
    """The clip directories of `split` under a dataset root, in the split file's order."""
    splits = read_splits(root)
    if split not in splits:
        raise InputError(f"dataset {root} has no split {split!r}; it has {sorted(splits)}")
    return [Path(root) / "clips" / name for name in splits[split]]
