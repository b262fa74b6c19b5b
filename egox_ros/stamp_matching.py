"""Approximate-time matching of several message streams to a pivot stream, without ROS.

message_filters is not available from PyPI, and its ApproximateTimeSynchronizer does not
do what a clip needs anyway: every pivot (exo image) stamp must get the *nearest* message of
each other stream (poses, depth, masks) within a tolerance, or be dropped and counted.

Matching (the watermark rule): a pivot is resolved as soon as no later message can change its
match. Stamps within each stream only increase (`StampGuard`), so once a stream has a message
at or after the pivot stamp, its nearest candidate is final; once it has one beyond pivot +
tolerance without a candidate, the pivot is unmatched. So a burst is matched as fast as it
arrives. A pivot still unresolved `max_wait_ns` after it arrived is given up (counted
"match_timeout"); "arrived" is read from `clock_ns` (the node: monotonic time) or, without a
clock (offline conversion), from the stamps (the newest pivot stamp is "now").

Stamps (`StampGuard`): a stamp that does not fit its stream (not after the last accepted one,
or more than `max_jump_ns` ahead of it and of the reference clock) is held as a suspect. The
next fitting message of that stream rejects the held suspects ("out_of_order_stamp" if they
were older, "stamp_implausible" if they were ahead); `restart_count` consecutive suspects that
fit each other mean the stream restarted (bag loop, sim-time reset, clock jump): the stream is
reset and the suspects are replayed, so no frame of the new run is lost.
"""
from __future__ import annotations

import bisect
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

__all__ = ["MatchedFrame", "StampGuard", "StampMatcher"]

#: (cause, message) of a rejected stamp or an event ("stream_restarted").
Report = Callable[[str, str], None]


class StampGuard:
    """Per-stream stamp checks: strictly increasing, no implausible jumps, restarts detected.

    `check()` returns the messages to accept now (in order) and whether they start a new run
    of the stream; rejected stamps go to `report(cause, message)`. `max_jump_ns`: the largest
    plausible step ahead of the stream's last stamp; `reference_ns` (optional; the node's
    clock when it is not sim time, None while there is no reference): a stamp within
    `max_jump_ns` of it is plausible however far the stream jumped (a camera resumed), and a
    stream's first stamp may not be more than `max_jump_ns` ahead of it. `restart_count`:
    consecutive suspects, each within `max_jump_ns` after the previous, that restart.
    """

    def __init__(self, *, max_jump_ns: int, restart_count: int, report: Report,
                 reference_ns: Callable[[], int | None] | None = None) -> None:
        if max_jump_ns <= 0:
            raise ValueError(f"max_jump_ns must be > 0, got {max_jump_ns}")
        if restart_count < 1:
            raise ValueError(f"restart_count must be >= 1, got {restart_count}")
        self.max_jump_ns = int(max_jump_ns)
        self.restart_count = int(restart_count)
        self._report = report
        self._reference = reference_ns
        self._last: dict[str, int] = {}
        self._held: dict[str, list[tuple[int, Any]]] = {}

    def last(self, stream: str) -> int | None:
        """The last accepted stamp of `stream` (None before the first)."""
        return self._last.get(stream)

    def held(self, stream: str) -> int:
        """Suspect messages of `stream` held for a decision."""
        return len(self._held.get(stream, ()))

    def restart(self, stream: str) -> list[tuple[int, Any]]:
        """Start `stream` afresh because the streams around it restarted: returns its held
        suspects (the start of its new run, to be accepted); its next stamp must follow
        them, or is accepted as a first one when there were none."""
        held, self._held[stream] = self._held.get(stream, []), []
        if held:
            self._last[stream] = held[-1][0]
        else:
            self._last.pop(stream, None)
        return held

    def reset(self) -> None:
        """Forget every stream and every held suspect."""
        self._last.clear()
        self._held.clear()

    def check(self, stream: str, stamp_ns: int, value: Any) -> tuple[list[tuple[int, Any]], bool]:
        """(messages to accept, in order; True if they restart the stream)."""
        last = self._last.get(stream)
        held = self._held.setdefault(stream, [])
        if stamp_ns == last or (held and stamp_ns == held[-1][0]):
            self._report("duplicate_stamp",
                         f"{stream}: stamp {stamp_ns} ns repeats the previous message's")
            return [], False
        if self._plausible(last, stamp_ns):
            self._reject_held(stream, last)
            self._last[stream] = stamp_ns
            return [(stamp_ns, value)], False
        if held and not 0 < stamp_ns - held[-1][0] <= self.max_jump_ns:
            self._reject_held(stream, last)          # the suspects do not form one run
            held = self._held[stream]
        held.append((stamp_ns, value))
        if len(held) < self.restart_count:
            return [], False
        self._held[stream] = []
        self._last[stream] = held[-1][0]
        return held, last is not None

    def _plausible(self, last: int | None, stamp: int) -> bool:
        ref = self._reference() if self._reference is not None else None
        if last is None:
            return ref is None or stamp <= ref + self.max_jump_ns
        if stamp <= last:
            return False
        return stamp - last <= self.max_jump_ns or (ref is not None
                                                    and abs(stamp - ref) <= self.max_jump_ns)

    def _reject_held(self, stream: str, last: int | None) -> None:
        held, self._held[stream] = self._held.get(stream, []), []
        jump_s = self.max_jump_ns / 1e9
        for stamp, _ in held:
            if last is not None and stamp < last:
                self._report("out_of_order_stamp",
                             f"{stream}: stamp {stamp} ns is {(last - stamp) / 1e6:.3f} ms older "
                             f"than the previous message's; dropping it")
            else:
                ahead = "the stream" if last is not None else "the node's clock"
                self._report("stamp_implausible",
                             f"{stream}: stamp {stamp} ns is more than {jump_s:g} s ahead of "
                             f"{ahead} (max_stamp_jump_s) and the stream did not follow it; "
                             "dropping it")


@dataclass
class MatchedFrame:
    """One pivot message with the nearest message of every other stream."""

    stamp_ns: int
    pivot: Any
    others: dict[str, Any] = field(default_factory=dict)
    offsets_ns: dict[str, int] = field(default_factory=dict)   # other stamp - pivot stamp


class StampMatcher:
    """Match `streams` to `pivot` by nearest stamp within `tolerance_ns`.

    `add()` returns the pivots it resolved, in stamp order (a restart of the pivot stream
    starts a new, again increasing run). `dropped` counts pivots given up per cause
    ("unmatched_<stream>", "match_timeout", "restart_discarded": pending when the pivot
    stream restarted); `rejected` counts the stamps refused on arrival and `restarts` the
    restarts per stream; `report(cause, message)` hears about each rejected stamp and each
    restart of the pivot stream ("stream_restarted").
    """

    def __init__(self, streams: Sequence[str], *, pivot: str = "exo", tolerance_ns: int,
                 max_wait_ns: int, max_jump_ns: int = 10**10, restart_count: int = 3,
                 clock_ns: Callable[[], int] | None = None,
                 reference_ns: Callable[[], int | None] | None = None,
                 report: Report | None = None, history: int = 512) -> None:
        if tolerance_ns < 0:
            raise ValueError(f"tolerance_ns must be >= 0, got {tolerance_ns}")
        if pivot in streams:
            raise ValueError(f"pivot stream {pivot!r} must not be listed in streams")
        self.pivot = pivot
        self.streams = tuple(streams)
        self.tolerance_ns = int(tolerance_ns)
        self.max_wait_ns = int(max_wait_ns)
        self._clock = clock_ns
        self._report_hook = report
        self.guard = StampGuard(max_jump_ns=max_jump_ns, restart_count=restart_count,
                                report=self._report, reference_ns=reference_ns)
        self._pending: deque[tuple[int, Any, int]] = deque()   # (stamp, value, arrival)
        self._newest_pivot: int | None = None
        self._stamps: dict[str, list[int]] = {s: [] for s in self.streams}
        self._values: dict[str, list[Any]] = {s: [] for s in self.streams}
        self._restarted_alone: set[str] = set()    # restarted since the pivot last moved on
        self._history = history
        self.dropped: Counter[str] = Counter()
        self.rejected: Counter[str] = Counter()
        self.restarts: Counter[str] = Counter()

    @property
    def pending(self) -> int:
        """Pivots still waiting for other streams."""
        return len(self._pending)

    def held(self) -> int:
        """Messages of all streams held as stamp suspects."""
        return sum(self.guard.held(s) for s in (self.pivot, *self.streams))

    def _report(self, cause: str, message: str) -> None:
        if cause != "stream_restarted":
            self.rejected[cause] += 1
        if self._report_hook is not None:
            self._report_hook(cause, message)

    def add(self, stream: str, stamp_ns: int, value: Any) -> list[MatchedFrame]:
        """Add one message; bad stamps are counted in `rejected` and reported, not raised."""
        stamp_ns = int(stamp_ns)
        if stream != self.pivot and stream not in self._stamps:
            raise ValueError(f"unknown stream {stream!r}; streams are {self.streams}")
        accepted, restart = self.guard.check(stream, stamp_ns, value)
        if restart:
            self._restart(stream, accepted[0][0])
        elif accepted and stream == self.pivot:
            self._restarted_alone.clear()
        now = self._clock() if self._clock is not None else None
        for stamp, item in accepted:
            if stream == self.pivot:
                self._pending.append((stamp, item, stamp if now is None else now))
                self._newest_pivot = stamp
            else:
                self._stamps[stream].append(stamp)
                self._values[stream].append(item)
        return self._resolve(final=False)

    def flush(self) -> list[MatchedFrame]:
        """End of input: match what can be matched with the messages seen, drop the rest."""
        return self._resolve(final=True)

    def reset(self) -> None:
        """Forget every stream, pending pivot (counted "restart_discarded") and suspect."""
        if self._pending:
            self.dropped["restart_discarded"] += len(self._pending)
        self._pending.clear()
        self._newest_pivot = None
        self.guard.reset()
        for stream in self.streams:
            self._stamps[stream].clear()
            self._values[stream].clear()
        self._restarted_alone.clear()

    def _restart(self, stream: str, first_stamp: int) -> None:
        """`stream` restarted at `first_stamp`: drop what belongs to its previous run."""
        self.restarts[stream] += 1
        if stream != self.pivot:
            # Only this stream's messages; pivots of the old run that still wait for it are
            # given up by max_wait (or dropped when the pivot stream restarts too).
            self._stamps[stream].clear()
            self._values[stream].clear()
            self._restarted_alone.add(stream)
            return
        self._report("stream_restarted",
                     f"{self.pivot}: stamps jumped from {self._newest_pivot} to {first_stamp} ns "
                     f"and {self.guard.restart_count} frames followed: the input restarted "
                     "(bag loop, sim-time or clock reset); matching and the partial clip start "
                     "afresh")
        if self._pending:
            self.dropped["restart_discarded"] += len(self._pending)
        self._pending.clear()
        self._newest_pivot = None
        for other in self.streams:
            if other in self._restarted_alone:
                continue                      # already on the new run: keep its messages
            self._stamps[other].clear()
            self._values[other].clear()
            for stamp, item in self.guard.restart(other):
                self._stamps[other].append(stamp)
                self._values[other].append(item)
        self._restarted_alone.clear()

    def _resolve(self, *, final: bool) -> list[MatchedFrame]:
        out: list[MatchedFrame] = []
        now = self._clock() if self._clock is not None else self._newest_pivot
        while self._pending:
            stamp, value, arrival = self._pending[0]
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
                if now - arrival <= self.max_wait_ns:
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
        # messages older than that minus the tolerance can never match again. Not so for a
        # stream that restarted ahead of the pivot: its messages belong to the pivot's next run.
        if self._pending:
            horizon = self._pending[0][0]
        else:
            horizon = self.guard.last(self.pivot)
        for stream in self.streams:
            stamps, values = self._stamps[stream], self._values[stream]
            keep_from = 0
            if horizon is not None and stream not in self._restarted_alone:
                keep_from = bisect.bisect_left(stamps, horizon - self.tolerance_ns)
            keep_from = max(keep_from, len(stamps) - self._history)
            if keep_from > 0:
                del stamps[:keep_from], values[:keep_from]
