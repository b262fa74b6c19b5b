"""Small file formats for offline generation (`egox generate`): cameras, trajectories, depth.

Camera / trajectory file (JSON or NPZ, same keys), world frame, metres, OpenCV optical axes:

    width, height          image size in pixels
    K                      3x3 (or 9 row-major values) pinhole intrinsics of that size
    D, distortion_model    optional CameraInfo distortion (images are undistorted on read)
    c2w                    4x4 camera-to-world (a static camera) or (F, 4, 4), one per frame
      or, in JSON only,
    poses                  [{"position": [x, y, z], "orientation": [x, y, z, w]}, ...]
                           (ROS order; one entry = static camera)

The exo camera file usually holds one static c2w; the ego trajectory file one c2w per frame.

Depth file (NPZ, optional: without one, `perception.depth_model` estimates the depth),
arrays of the exo video's size, frame for frame:

    depth_m                (F, H, W) float32 metric depth (0 / NaN = invalid)
      or both
    depth_mono_m           (F, H, W) per-frame metric estimate (D_m)
    depth_video            (F, H, W) temporally smooth, affine-ambiguous estimate (D_v)
    dynamic_mask           optional (F, H, W) bool, True = moving object

Outputs (`write_generation`): `ego.mp4`, `prior.mp4`, `ego_stamps_ns.npy` (the source exo
frame's stamp of every ego frame) and `report.json` (backend, frames, timings, diagnostics).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from egox_model.clip import Clip
from egox_model.errors import InputError
from egox_model.geometry.camera import CameraModel
from egox_model.geometry.pose import check_c2w, pose_to_c2w
from egox_model.output import GeneratorOutput
from egox_model.video import read_video, write_video

__all__ = ["CameraTrack", "load_clip", "read_camera", "read_depth", "write_camera",
           "write_generation"]


@dataclass
class CameraTrack:
    """A camera model and its pose per frame: c2w (F, 4, 4) float64 (F = 1 when static)."""

    camera: CameraModel
    c2w: np.ndarray

    def for_frames(self, num_frames: int, name: str) -> np.ndarray:
        """(num_frames, 4, 4) poses: a static pose is repeated; a trajectory must match."""
        if len(self.c2w) == 1:
            return np.repeat(self.c2w, num_frames, axis=0)
        if len(self.c2w) < num_frames:
            raise InputError(f"{name} has {len(self.c2w)} poses but the video has {num_frames} "
                             "frames; give one pose per frame (or a single static pose)")
        return self.c2w[:num_frames]


def _load_mapping(path: Path) -> dict:
    if not path.is_file():
        raise InputError(f"camera file {str(path)!r} does not exist")
    if path.suffix == ".json":
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise InputError(f"camera file {path} is not valid JSON: {err}") from err
    if path.suffix == ".npz":
        with np.load(path) as data:
            return {k: data[k] for k in data.files}
    raise InputError(f"camera file {path} must be .json or .npz, got {path.suffix!r}")


def read_camera(path: str | Path) -> CameraTrack:
    """Read a camera / trajectory file (format in the module docstring)."""
    path = Path(path)
    data = _load_mapping(path)
    for key in ("width", "height", "K"):
        if key not in data:
            raise InputError(f"camera file {path} lacks {key!r} (needs width, height, K and "
                             "c2w or poses)")
    camera = CameraModel.from_camera_info(
        width=int(data["width"]), height=int(data["height"]),
        K=np.asarray(data["K"], dtype=np.float64).ravel(),
        D=np.asarray(data.get("D", []), dtype=np.float64).ravel(),
        distortion_model=str(data.get("distortion_model", "plumb_bob")))
    if "c2w" in data:
        c2w = np.asarray(data["c2w"], dtype=np.float64)
        c2w = c2w[None] if c2w.ndim == 2 else c2w
    elif "poses" in data:
        poses = data["poses"] if isinstance(data["poses"], list) else [data["poses"]]
        c2w = np.stack([pose_to_c2w(p["position"], p["orientation"]) for p in poses])
    else:
        raise InputError(f"camera file {path} needs 'c2w' (4x4 or Fx4x4) or 'poses'")
    return CameraTrack(camera, check_c2w(f"{path.name} c2w", c2w))


def write_camera(path: str | Path, camera: CameraModel, c2w: np.ndarray) -> Path:
    """Write a camera / trajectory file (.json or .npz) that `read_camera` reads back."""
    path = Path(path)
    k = camera.intrinsics
    data = {"width": k.width, "height": k.height, "K": k.K, "c2w": np.asarray(c2w),
            "D": np.asarray(camera.D), "distortion_model": camera.distortion_model}
    if path.suffix == ".npz":
        np.savez(path, **data)
    else:
        path.write_text(json.dumps({key: (v.tolist() if isinstance(v, np.ndarray) else v)
                                    for key, v in data.items()}))
    return path


def read_depth(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a depth file (module docstring), as Clip keyword arguments."""
    path = Path(path)
    if not path.is_file() or path.suffix != ".npz":
        raise InputError(f"depth file {str(path)!r} must be an existing .npz with depth_m "
                         "(or depth_mono_m and depth_video)")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    names = {"depth_m": "exo_depth_m", "depth_mono_m": "exo_depth_mono_m",
             "depth_video": "exo_depth_video", "dynamic_mask": "dynamic_mask"}
    unknown = sorted(set(arrays) - set(names))
    if unknown:
        raise InputError(f"depth file {path} has unknown arrays {unknown}; "
                         f"expected {sorted(names)}")
    return {names[k]: v for k, v in arrays.items()}


def _undistort(camera: CameraModel, frames: np.ndarray, interpolation: int) -> np.ndarray:
    if not camera.is_distorted:
        return frames
    return np.stack([camera.undistort(f, interpolation) for f in frames])


def load_clip(exo_video: str | Path, exo_camera: str | Path, ego_poses: str | Path,
              exo_depth: str | Path | None = None, *, prompt: str = "",
              max_frames: int | None = None) -> Clip:
    """A `Clip` from files: exo video + its camera, the ego trajectory and the exo depth
    (None: a clip without depth, for `egox_model.perception` to estimate).

    Distorted cameras are undistorted to their pinhole `rectified` model (images, depth and
    masks alike). max_frames keeps the first frames (e.g. 49).
    """
    frames, fps = read_video(exo_video)
    if max_frames is not None:
        frames = frames[:max_frames]
    num_frames = len(frames)
    exo, ego = read_camera(exo_camera), read_camera(ego_poses)
    depth = ({} if exo_depth is None else
             {k: v[:num_frames] for k, v in read_depth(exo_depth).items()})
    for name, array in depth.items():
        if len(array) != num_frames:
            raise InputError(f"{name} has {len(array)} frames but the video has {num_frames}")
        depth[name] = _undistort(exo.camera, array.astype(np.float32), cv2.INTER_NEAREST)
    if "dynamic_mask" in depth:
        depth["dynamic_mask"] = depth["dynamic_mask"] > 0.5
    return Clip(exo_rgb=_undistort(exo.camera, frames, cv2.INTER_LINEAR),
                exo_K=exo.camera.rectified, exo_c2w=exo.for_frames(num_frames, "exo camera"),
                ego_K=ego.camera.rectified, ego_c2w=ego.for_frames(num_frames, "ego poses"),
                stamps_ns=np.round(np.arange(num_frames) * 1e9 / (fps or 30.0)).astype(np.int64),
                prompt=prompt, fps=fps or 30.0, **depth)


def write_generation(out_dir: str | Path, output: GeneratorOutput, fps: float) -> dict:
    """Write a generator's output to `out_dir` (see module docstring); returns the report."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_video(out_dir / "ego.mp4", output.ego_rgb, fps)
    write_video(out_dir / "prior.mp4", output.prior.rgb, fps)
    if output.stamps_ns is not None:
        np.save(out_dir / "ego_stamps_ns.npy", output.stamps_ns)
    report = {"backend": output.backend, "frames": len(output.ego_rgb),
              "prior_coverage": float(output.prior.mask.mean()),
              "ms_per_frame": output.ms_per_frame, "diagnostics": output.diagnostics}
    (out_dir / "report.json").write_text(json.dumps(report, indent=1, default=str))
    return report
