"""The Frechet distance between two Gaussians fitted to feature sets (FID / FVD's final step).

d^2 = |mu_1 - mu_2|^2 + tr(S_1 + S_2 - 2 (S_1 S_2)^(1/2)), with the matrix square root from
scipy.linalg.sqrtm, as in the reference FID/FVD implementations (tiny imaginary parts from
round-off dropped; a small diagonal offset added when the root of a singular product is not
finite). With fewer feature vectors than dimensions the covariances are singular and the
estimate is biased upwards: compare distances only between runs with the same clip count.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from egox_model.errors import InputError

__all__ = ["FeatureStats", "feature_stats", "frechet_distance"]


@dataclass(frozen=True)
class FeatureStats:
    """Mean (D,) and covariance (D, D) float64 of `count` feature vectors."""

    mean: np.ndarray
    cov: np.ndarray
    count: int


def feature_stats(features: np.ndarray) -> FeatureStats:
    """Gaussian fitted to features (N, D): sample mean and unbiased covariance (N - 1)."""
    features = np.asarray(features, dtype=np.float64)
    if features.ndim != 2 or features.shape[0] < 2:
        raise InputError(f"features must be (N, D) with N >= 2 vectors, got shape "
                         f"{features.shape}")
    if not np.isfinite(features).all():
        raise InputError("features hold NaN or inf")
    return FeatureStats(features.mean(0), np.atleast_2d(np.cov(features, rowvar=False)),
                        features.shape[0])


def frechet_distance(a: FeatureStats, b: FeatureStats, eps: float = 1e-6) -> float:
    """Squared Frechet distance between the Gaussians `a` and `b` (same dimension D)."""
    from scipy import linalg

    if a.mean.shape != b.mean.shape:
        raise InputError(f"feature dimensions differ: {a.mean.shape[0]} vs {b.mean.shape[0]}")
    diff = a.mean - b.mean
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", linalg.LinAlgWarning)      # singular: N < D vectors
        covmean = linalg.sqrtm(a.cov @ b.cov)
        if not np.isfinite(covmean).all():
            offset = np.eye(a.cov.shape[0]) * eps
            covmean = linalg.sqrtm((a.cov + offset) @ (b.cov + offset))
    if np.iscomplexobj(covmean):
        covmean = covmean.real
    distance = diff @ diff + np.trace(a.cov) + np.trace(b.cov) - 2.0 * np.trace(covmean)
    return float(max(distance, 0.0))
