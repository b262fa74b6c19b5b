"""Approximate-time matching of several message streams to a pivot stream, without ROS.

message_filters is not available from PyPI, and its ApproximateTimeSynchronizer does not
do what a clip needs anyway: every pivot (exo image) stamp must get the *nearest* message of
each other stream (poses, depth, masks) within a tolerance, or be dropped and counted.

A pivot is resolved as soon as no later message can change its match: stamps within each
stream only increase (out-of-order and duplicate stamps are rejected on arrival), so once a
stream has a message at or after the pivot stamp, its nearest candidate is final; once it has
one beyond pivot + tolerance without a candidate, the pivot is unmatched. Pivots waiting for
a stream longer than `max_wait_ns` (measured in pivot stamps) are dropped as unmatched.
"""
from __future__ import annotations

import bisect
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Sequence

from egox_ros.errors import MessageError

__all__ = ["MatchedFrame", "StampMatcher", "StampOrder"]


class StampOrder:
    """Rejects stamps that do not strictly increase, per stream."""

    def __init__(self) -> None:
        self._last: dict[str, int] = {}

    def check(self, stream: str, stamp_ns: int) -> None:
        """Raise MessageError ("duplicate_stamp" / "out_of_order_stamp") or record the stamp."""
        last = self._last.get(stream)
        if last is not None and stamp_ns == last:
            raise MessageError("duplicate_stamp",
                               f"{stream}: stamp {stamp_ns} ns repeats the previous message's")
        if last is not None and stamp_ns < last:
            raise MessageError("out_of_order_stamp",
                               f"{stream}: stamp {stamp_ns} ns is {(last - stamp_ns) / 1e6:.3f} "
                               f"ms older than the previous message's; dropping it")
        self._last[stream] = stamp_ns

    def last(self, stream: str) -> int | None:
        """The last accepted stamp of `stream` (None before the first)."""
        return self._last.get(stream)

    def reset(self) -> None:
        """Forget all streams (e.g. after a clock jump backwards)."""
        self._last.clear()


@dataclass
class MatchedFrame:
    """One pivot message with the nearest message of every other stream."""

    stamp_ns: int
    pivot: Any
    others: dict[str, Any] = field(default_factory=dict)
    offsets_ns: dict[str, int] = field(default_factory=dict)   # other stamp - pivot stamp


class StampMatcher:
    """Match `streams` to `pivot` by nearest stamp within `tolerance_ns`.

    `add()` returns the pivots it resolved, in stamp order. `dropped` counts unmatched pivots
    per cause ("unmatched_<stream>", "match_timeout"), `rejected` the stamps refused on arrival.
    """

    def __init__(self, streams: Sequence[str], *, pivot: str = "exo", tolerance_ns: int,
                 max_wait_ns: int, history: int = 512) -> None:
        if tolerance_ns < 0:
            raise ValueError(f"tolerance_ns must be >= 0, got {tolerance_ns}")
        if pivot in streams:
            raise ValueError(f"pivot stream {pivot!r} must not be listed in streams")
        self.pivot = pivot
        self.streams = tuple(streams)
        self.tolerance_ns = int(tolerance_ns)
        self.max_wait_ns = int(max_wait_ns)
        self._order = StampOrder()
        self._pending: deque[tuple[int, Any]] = deque()
        self._stamps: dict[str, list[int]] = {s: [] for s in self.streams}
        self._values: dict[str, list[Any]] = {s: [] for s in self.streams}
        self._history = history
        self.dropped: Counter[str] = Counter()

    @property
    def pending(self) -> int:
        """Pivots still waiting for other streams."""
        return len(self._pending)

    def add(self, stream: str, stamp_ns: int, value: Any) -> list[MatchedFrame]:
        """Add one message; raises MessageError for a duplicate / out-of-order stamp."""
        stamp_ns = int(stamp_ns)
        self._order.check(stream, stamp_ns)
        if stream == self.pivot:
            self._pending.append((stamp_ns, value))
        elif stream in self._stamps:
            self._stamps[stream].append(stamp_ns)
            self._values[stream].append(value)
        else:
            raise ValueError(f"unknown stream {stream!r}; streams are {self.streams}")
        return self._resolve(final=False)

    def flush(self) -> list[MatchedFrame]:
        """End of input: match what can be matched with the messages seen, drop the rest."""
        return self._resolve(final=True)

    def _resolve(self, *, final: bool) -> list[MatchedFrame]:
        out: list[MatchedFrame] = []
        while self._pending:
            stamp, value = self._pending[0]
            frame = MatchedFrame(stamp, value)
            waiting, missing = None, None
            for stream in self.streams:
                state = self._match(stream, stamp, final)
                if state == "wait":
                    waiting = stream
                    break
                if state is None:
                    missing = stream
                    break
                frame.others[stream], frame.offsets_ns[stream] = state
            if waiting is not None:
                newest = self._pending[-1][0]
                if newest - stamp <= self.max_wait_ns:
                    break
                self.dropped["match_timeout"] += 1
            elif missing is not None:
                self.dropped[f"unmatched_{missing}"] += 1
            else:
                out.append(frame)
            self._pending.popleft()
        self._prune()
        return out

    def _match(self, stream: str, stamp: int, final: bool):
        """(value, offset) of the nearest message, None if there is none, "wait" if unknown."""
        stamps = self._stamps[stream]
        latest = stamps[-1] if stamps else None
        i = bisect.bisect_left(stamps, stamp - self.tolerance_ns)
        best, best_dt = None, None
        while i < len(stamps) and stamps[i] <= stamp + self.tolerance_ns:
            dt = stamps[i] - stamp
            if best_dt is None or abs(dt) < abs(best_dt):
                best, best_dt = i, dt
            i += 1
        settled = final or (latest is not None and latest >= stamp
                            and (best is not None or latest > stamp + self.tolerance_ns))
        if not settled:
            return "wait"
        if best is None:
            return None
        return self._values[stream][best], best_dt

    def _prune(self) -> None:
        # Future pivots are newer than the oldest pending one (or than the last pivot seen):
        # messages older than that minus the tolerance can never match again.
        if self._pending:
            horizon = self._pending[0][0]
        else:
            horizon = self._order.last(self.pivot)
        for stream in self.streams:
            stamps, values = self._stamps[stream], self._values[stream]
            keep_from = 0
            if horizon is not None:
                keep_from = bisect.bisect_left(stamps, horizon - self.tolerance_ns)
            keep_from = max(keep_from, len(stamps) - self._history)
            if keep_from > 0:
                del stamps[:keep_from], values[:keep_from]
