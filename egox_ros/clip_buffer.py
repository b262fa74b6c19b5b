"""Cut a stream of matched frames into clips, resampled to the generator's frame rate.

ROS-free. Frames arrive with strictly increasing stamps (the matcher rejects the rest), except
when the input restarted (bag loop, sim-time reset): a frame at or before the last one starts
a new clip (the partial one is discarded and counted). Resampling only drops frames (a 60 Hz
camera feeds a 30 fps generator every other frame); it never invents frames, so a source
slower than `fps` yields clips at the source rate.
A gap longer than `max_gap_ns` starts a new clip (the frames so far are discarded and
counted), because a clip must be one continuous stretch of video.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

__all__ = ["ClipBuffer", "ClipSpec"]


@dataclass(frozen=True)
class ClipSpec:
    """Clip length and stride in frames, the generator's fps, and the largest allowed gap.

    stride = length: consecutive clips do not overlap; stride < length: they share
    `length - stride` frames; max_gap_s = 0 means 3 frame periods.
    """

    length: int = 49
    stride: int = 49
    fps: float = 30.0
    max_gap_s: float = 0.0

    def __post_init__(self) -> None:
        if self.length < 1:
            raise ValueError(f"clip length must be >= 1 frame, got {self.length}")
        if not 1 <= self.stride <= self.length:
            raise ValueError(f"clip stride must be in [1, length={self.length}], got "
                             f"{self.stride} (overlap = length - stride)")
        if not self.fps > 0:
            raise ValueError(f"fps must be positive, got {self.fps}")
        if self.max_gap_s < 0:
            raise ValueError(f"max_gap_s must be >= 0, got {self.max_gap_s}")

    @property
    def period_ns(self) -> int:
        """Nominal frame period in nanoseconds."""
        return int(round(1e9 / self.fps))

    @property
    def max_gap_ns(self) -> int:
        """Largest stamp gap inside one clip."""
        return int(self.max_gap_s * 1e9) if self.max_gap_s > 0 else 3 * self.period_ns


class ClipBuffer:
    """Collects (stamp_ns, frame) pairs and returns a clip when `length` frames are in.

    `counters`: "resampled" (frames skipped to reach fps), "gap_reset" (clips restarted after
    a gap), "gap_discarded" (frames thrown away by those restarts), "restart_discarded"
    (frames of a partial clip thrown away because the stamps went back: the input restarted).
    """

    def __init__(self, spec: ClipSpec) -> None:
        self.spec = spec
        self._stamps: list[int] = []
        self._frames: list[Any] = []
        self._next_due: int | None = None
        self._last: int | None = None                 # last stamp pushed (kept or resampled)
        self.counters: Counter[str] = Counter()
        #: index of the frame the last `push` accepted within its clip (None: resampled away)
        self.last_index: int | None = None

    def __len__(self) -> int:
        return len(self._frames)

    def push(self, stamp_ns: int, frame: Any) -> tuple[list[int], list[Any]] | None:
        """Add a frame; return (stamps, frames) of a complete clip, else None."""
        period = self.spec.period_ns
        if self._last is not None and stamp_ns <= self._last:
            self.counters["restart_discarded"] += len(self._frames)
            self.reset()
        if self._stamps and stamp_ns - self._stamps[-1] > self.spec.max_gap_ns:
            self.counters["gap_reset"] += 1
            self.counters["gap_discarded"] += len(self._frames)
            self.reset()
        self.last_index = None
        self._last = int(stamp_ns)
        if self._next_due is not None and stamp_ns < self._next_due - period // 4:
            self.counters["resampled"] += 1
            return None
        if self._next_due is None or stamp_ns > self._next_due + period // 2:
            self._next_due = stamp_ns + period        # first frame, or fell behind: re-anchor
        else:
            self._next_due += period
        self._stamps.append(int(stamp_ns))
        self._frames.append(frame)
        self.last_index = len(self._frames) - 1
        if len(self._frames) < self.spec.length:
            return None
        clip = (self._stamps[:], self._frames[:])
        del self._stamps[:self.spec.stride], self._frames[:self.spec.stride]
        return clip

    def reset(self) -> None:
        """Drop the partial clip."""
        self._stamps.clear()
        self._frames.clear()
        self._next_due = None
        self._last = None
