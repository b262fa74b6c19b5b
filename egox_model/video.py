"""Video files: (F, H, W, 3) uint8 RGB frames <-> H.264 mp4 (PyAV through imageio)."""
from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np

from egox_model.errors import InputError

__all__ = ["read_video", "write_video"]


def write_video(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """Write frames (F, H, W, 3) uint8 to an H.264 mp4 at `fps` (even sizes are padded)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(f"frames must be (F, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2       # yuv420p needs even sizes
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    path = Path(path)
    iio.imwrite(path, frames, fps=fps, codec="libx264", plugin="pyav")
    return path


def read_video(path: str | Path) -> tuple[np.ndarray, float]:
    """Frames (F, H, W, 3) uint8 RGB and the frame rate of a video file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"video {str(path)!r} does not exist")
    with iio.imopen(path, "r", plugin="pyav") as video:    # one open: each close runs a
        frames = video.read()                              # full gc.collect (imageio)
        fps = float(video.metadata().get("fps") or 0.0)
    return frames, fps
