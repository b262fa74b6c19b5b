"""Wall-time measurement of pipeline stages, in milliseconds per frame."""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Iterator

import torch

__all__ = ["stage_timer"]


@contextmanager
def stage_timer(timings_ms: dict[str, float], stage: str, num_frames: int) -> Iterator[None]:
    """Record the wall time of a block as milliseconds per frame under `stage` (CUDA work
    queued inside the block is waited for)."""
    start = time.perf_counter()
    yield
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    timings_ms[stage] = (time.perf_counter() - start) * 1e3 / num_frames
