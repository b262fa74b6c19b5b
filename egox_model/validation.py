"""Input checks shared by the core: each raises InputError naming the offending field."""
from __future__ import annotations

import numpy as np

from egox_model.errors import InputError

__all__ = ["require_finite", "require_shape"]


def require_shape(name: str, array: np.ndarray, shape: tuple[int | None, ...]) -> None:
    """Check `array.shape` against `shape` (None = any size on that axis)."""
    ok = array.ndim == len(shape) and all(s is None or s == a for s, a in zip(shape, array.shape))
    if not ok:
        want = "x".join("*" if s is None else str(s) for s in shape)
        raise InputError(f"{name} must have shape {want}, got {tuple(array.shape)}")


def require_finite(name: str, array: np.ndarray) -> None:
    """Reject NaN or infinite entries."""
    if not np.all(np.isfinite(array)):
        bad = int(np.size(array) - np.count_nonzero(np.isfinite(array)))
        raise InputError(f"{name} has {bad} non-finite value(s); it must be all finite")
