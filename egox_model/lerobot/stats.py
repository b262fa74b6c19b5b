"""Feature statistics as LeRobot v3 stores them (meta/stats.json, the episodes' stats/*).

Per feature: min, max, mean, std, count and quantiles q01 q10 q50 q90 q99. Vectors (N, d)
reduce over frames to shape (d,), scalars (N,) to (1,), videos per channel to (3, 1, 1) on
pixel values / 255 (count stays the number of frames), as lerobot's compute_episode_stats;
episodes combine with count-weighted means and pooled variance, as its aggregate_stats.
"""
from __future__ import annotations

import numpy as np

__all__ = ["QUANTILES", "aggregate_stats", "feature_stats", "image_stats"]

QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)


def _quantile_key(q: float) -> str:
    return f"q{int(q * 100):02d}"


def _stats(samples: np.ndarray, count: int) -> dict[str, np.ndarray]:
    """samples (S, ...) reduced over axis 0."""
    out = {"min": samples.min(0), "max": samples.max(0), "mean": samples.mean(0),
           "std": samples.std(0), "count": np.array([count])}
    for q in QUANTILES:
        out[_quantile_key(q)] = np.quantile(samples, q, axis=0)
    return out


def feature_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Stats of a vector (N, d) or scalar (N,) feature."""
    values = np.asarray(values, np.float64)
    samples = values[:, None] if values.ndim == 1 else values
    return _stats(samples, len(values))


def image_stats(pixels: np.ndarray, frames: int) -> dict[str, np.ndarray]:
    """Per-channel stats, shape (3, 1, 1), of sampled frames `pixels` (S, h, w, 3) uint8 on
    [0, 1]; `frames`: the episode's frame count (lerobot samples frames too)."""
    samples = np.asarray(pixels, np.float64).reshape(-1, 3) / 255.0
    stats = _stats(samples, frames)
    return {k: v if k == "count" else v.reshape(3, 1, 1) for k, v in stats.items()}


def aggregate_stats(stats_list: list[dict[str, dict[str, np.ndarray]]]
                    ) -> dict[str, dict[str, np.ndarray]]:
    """Combine per-episode (or per-dataset) stats: min of mins, max of maxes, count-weighted
    mean, pooled std, count-weighted quantiles (lerobot's approximation)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for key in dict.fromkeys(k for stats in stats_list for k in stats):
        parts = [s[key] for s in stats_list if key in s]
        counts = np.stack([np.asarray(p["count"], np.float64) for p in parts])
        means = np.stack([np.asarray(p["mean"], np.float64) for p in parts])
        weights = counts.reshape(counts.shape + (1,) * (means.ndim - counts.ndim))
        total = counts.sum(0)
        weights_sum = weights.sum(0)
        mean = (means * weights).sum(0) / weights_sum
        var = ((np.stack([np.asarray(p["std"]) ** 2 for p in parts]) + (means - mean) ** 2)
               * weights).sum(0) / weights_sum
        agg = {"min": np.min(np.stack([p["min"] for p in parts]), 0),
               "max": np.max(np.stack([p["max"] for p in parts]), 0),
               "mean": mean, "std": np.sqrt(var), "count": total.astype(np.int64)}
        for q in QUANTILES:
            k = _quantile_key(q)
            if all(k in p for p in parts):
                agg[k] = (np.stack([np.asarray(p[k]) for p in parts]) * weights).sum(0) \
                    / weights_sum
        out[key] = agg
    return out
