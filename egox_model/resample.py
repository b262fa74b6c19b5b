"""Resampling time-stamped streams onto a fixed frame-rate grid, gaps reported, never filled.

A grid time t of a stream with sorted stamps s is *covered* when t equals a stamp or lies
between two neighbouring stamps at most `max_gap_ns` apart; otherwise (outside the stream,
or inside a longer gap) it is a gap. Covered values are the nearest sample (images) or a
linear interpolation of the bracketing pair (vectors; quaternion blocks by slerp).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from egox_model.errors import InputError
from egox_model.geometry.pose import slerp

__all__ = ["Bracket", "bracket", "frame_grid", "runs"]


def frame_grid(start_ns: int, stop_ns: int, fps: float) -> np.ndarray:
    """Stamps (int64 ns) start, start + 1/fps, ... up to and including stop."""
    if not fps > 0:
        raise InputError(f"fps must be > 0, got {fps}")
    if stop_ns < start_ns:
        return np.zeros(0, np.int64)
    count = int(np.floor((stop_ns - start_ns) * fps / 1e9 + 1e-9)) + 1
    return start_ns + np.round(np.arange(count) * 1e9 / fps).astype(np.int64)


@dataclass
class Bracket:
    """Where grid times fall in a stream: samples lo and hi (= lo on an exact stamp), the
    fraction of the way from lo to hi, and which grid times are covered."""

    lo: np.ndarray
    hi: np.ndarray
    fraction: np.ndarray
    covered: np.ndarray

    def nearest(self) -> np.ndarray:
        """Index of the nearer sample per grid time (lo on a tie)."""
        return np.where(self.fraction > 0.5, self.hi, self.lo)

    def interpolate(self, values: np.ndarray, quaternion_slices: tuple[slice, ...] = ()
                    ) -> np.ndarray:
        """(G, d) float64: `values` (N, d) linearly interpolated at the grid times; each
        `quaternion_slices` block (x, y, z, w) by slerp. Gap rows are NaN."""
        values = np.asarray(values, np.float64)
        f = self.fraction[:, None]
        out = (1.0 - f) * values[self.lo] + f * values[self.hi]
        for block in quaternion_slices:
            out[:, block] = [slerp(values[lo, block], values[hi, block], float(fr))
                             for lo, hi, fr in zip(self.lo, self.hi, self.fraction)]
        out[~self.covered] = np.nan
        return out


def bracket(stamps_ns: np.ndarray, grid_ns: np.ndarray, max_gap_ns: int) -> Bracket:
    """Locate every grid time in the sorted `stamps_ns` (see the module docstring)."""
    stamps = np.asarray(stamps_ns, np.int64)
    grid = np.asarray(grid_ns, np.int64)
    if stamps.size and np.any(np.diff(stamps) < 0):
        raise InputError("stamps must be sorted")
    n = len(stamps)
    if n == 0:
        zeros = np.zeros(len(grid), np.int64)
        return Bracket(zeros, zeros, np.zeros(len(grid)), np.zeros(len(grid), bool))
    lo = np.searchsorted(stamps, grid, side="right") - 1
    exact = (lo >= 0) & (stamps[np.clip(lo, 0, n - 1)] == grid)
    hi = np.where(exact, lo, lo + 1)
    inside = (lo >= 0) & (hi < n)
    lo_c, hi_c = np.clip(lo, 0, n - 1), np.clip(hi, 0, n - 1)
    span = stamps[hi_c] - stamps[lo_c]
    covered = inside & (exact | (span <= max_gap_ns))
    with np.errstate(divide="ignore", invalid="ignore"):
        fraction = np.where(span > 0, (grid - stamps[lo_c]) / np.maximum(span, 1), 0.0)
    fraction = np.where(covered, fraction, 0.0)
    return Bracket(lo_c, hi_c, fraction, covered)


def runs(mask: np.ndarray) -> list[tuple[int, int]]:
    """[start, stop) index ranges of the True runs of a 1-D bool mask."""
    padded = np.concatenate([[False], np.asarray(mask, bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2])]
