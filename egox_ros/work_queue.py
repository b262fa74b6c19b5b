"""A bounded, thread-safe hand-over queue with an explicit overflow policy and drop counter.

ROS callbacks put complete clips; the worker thread gets them. When the queue is full,
"drop_oldest" discards the oldest queued clip (freshest output, the default for live
robots) and "drop_newest" refuses the new one (keeps work already queued). Either way the
drop is counted and the put never blocks.
"""
from __future__ import annotations

import threading
from collections import deque
from typing import Any

__all__ = ["OVERFLOW_POLICIES", "BoundedQueue"]

OVERFLOW_POLICIES = ("drop_oldest", "drop_newest")


class BoundedQueue:
    """FIFO of at most `maxsize` items; `close()` wakes every waiting `get()`."""

    def __init__(self, maxsize: int, policy: str = "drop_oldest") -> None:
        if maxsize < 1:
            raise ValueError(f"queue size must be >= 1, got {maxsize}")
        if policy not in OVERFLOW_POLICIES:
            raise ValueError(f"overflow policy must be one of {OVERFLOW_POLICIES}, got {policy!r}")
        self.maxsize = maxsize
        self.policy = policy
        self.dropped = 0
        self._items: deque[Any] = deque()
        self._cond = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    @property
    def closed(self) -> bool:
        """True after `close()`."""
        return self._closed

    def put(self, item: Any) -> Any | None:
        """Enqueue without blocking; return the item dropped to make room (or refused), if any."""
        with self._cond:
            if self._closed:
                self.dropped += 1
                return item
            dropped = None
            if len(self._items) >= self.maxsize:
                self.dropped += 1
                if self.policy == "drop_newest":
                    return item
                dropped = self._items.popleft()
            self._items.append(item)
            self._cond.notify()
            return dropped

    def get(self, timeout: float | None = None) -> Any | None:
        """Next item, or None on timeout or once closed."""
        with self._cond:
            if not self._items and not self._closed:
                self._cond.wait(timeout)
            if self._closed or not self._items:
                return None
            return self._items.popleft()

    def close(self) -> list[Any]:
        """Stop accepting items, wake waiters, and return the items abandoned in the queue."""
        with self._cond:
            self._closed = True
            abandoned = list(self._items)
            self._items.clear()
            self._cond.notify_all()
            return abandoned
