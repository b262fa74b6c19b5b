"""Video files: (F, H, W, 3) uint8 RGB frames <-> H.264 mp4, with PyAV (imageio's PyAV plugin
runs a full gc.collect() on every close: ~0.35 s in a process with torch loaded)."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

from egox_model.errors import InputError

__all__ = ["VideoWriter", "read_video", "write_video"]


class VideoWriter:
    """An mp4 written frame by frame: yuv420p, constant frame rate, pts = frame number.
    `options` go to the encoder (e.g. {"g": "2", "crf": "23"}); `bytes` is the encoded size
    so far (the encoder holds back its lookahead, a few dozen frames, until `close`)."""

    def __init__(self, path: str | Path, fps: float, size: tuple[int, int],
                 codec: str = "libx264", options: dict[str, str] | None = None):
        height, width = size
        if height % 2 or width % 2:
            raise InputError(f"{path}: frames are {width}x{height}; yuv420p video needs even "
                             "sizes")
        self.path, self.size, self.frames, self.bytes = Path(path), size, 0, 0
        self.path.parent.mkdir(parents=True, exist_ok=True)
        rate = Fraction(fps).limit_denominator(1001)
        self.container = av.open(str(self.path), "w")
        self.stream = self.container.add_stream(codec, rate=rate, options=options or {})
        self.stream.width, self.stream.height, self.stream.pix_fmt = width, height, "yuv420p"
        self.time_base = 1 / rate

    def add(self, rgb: np.ndarray) -> None:
        """Encode one (H, W, 3) uint8 RGB frame."""
        if rgb.shape != (*self.size, 3) or rgb.dtype != np.uint8:
            raise InputError(f"{self.path}: frame {self.frames} is {rgb.shape} {rgb.dtype}, "
                             f"the video is {self.size} uint8 RGB")
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts, frame.time_base = self.frames, self.time_base
        self._mux(self.stream.encode(frame))
        self.frames += 1

    def _mux(self, packets: list) -> None:
        self.container.mux(packets)
        self.bytes += sum(packet.size for packet in packets)

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        self._mux(self.stream.encode(None))
        self.container.close()

    def abort(self) -> None:
        """Close without flushing the encoder (the file is left incomplete)."""
        self.container.close()


def write_video(path: str | Path, frames: np.ndarray, fps: float) -> Path:
    """Write frames (F, H, W, 3) uint8 to an H.264 mp4 at `fps` (even sizes are padded)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise InputError(f"frames must be (F, H, W, 3) uint8, got {frames.shape} {frames.dtype}")
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2       # yuv420p needs even sizes
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    video = VideoWriter(path, fps, frames.shape[1:3])
    for frame in frames:
        video.add(frame)
    video.close()
    return video.path


def read_video(path: str | Path) -> tuple[np.ndarray, float]:
    """Frames (F, H, W, 3) uint8 RGB and the frame rate of a video file."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"video {str(path)!r} does not exist")
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        rate = stream.average_rate or stream.base_rate
    if not frames:
        raise InputError(f"video {str(path)!r} has no frames")
    return np.stack(frames), float(rate or 0.0)
