"""Benchmarks behind `egox bench`: each reports its figure beside its baseline.

Shared here: the default clip's token grid and random token geometry for the attention
benchmarks, and the device check.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from egox_model.errors import InputError
from egox_model.geometry.tokens import TokenGeometry

__all__ = ["EGO_COLS", "EXO_COLS", "ROWS", "TOKENS_PER_FRAME", "random_token_geometry",
           "require_device"]

#: Token grid of one latent frame of the default clip: 448 x (784 | 448) pixels / 16.
ROWS, EXO_COLS, EGO_COLS = 28, 49, 28
TOKENS_PER_FRAME = ROWS * (EXO_COLS + EGO_COLS)       # 2,156; 13 frames = 28,028


def require_device(device: str) -> None:
    """Accept 'cpu', or 'cuda' when torch sees a GPU; otherwise raise InputError."""
    if device not in ("cpu", "cuda"):
        raise InputError(f"device must be 'cpu' or 'cuda', got {device!r}")
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("device 'cuda' requested but torch sees no CUDA GPU; use --device cpu")


def random_token_geometry(frames: int, generator: torch.Generator) -> TokenGeometry:
    """Pooled-looking ego rays, a drifting ego centre and exo points with 5 % invalid."""
    dirs = F.normalize(torch.randn(frames, ROWS, EGO_COLS, 3, generator=generator), dim=-1)
    centers = torch.cumsum(0.05 * torch.randn(frames, 3, generator=generator), 0)
    points = 3.0 * torch.randn(frames, ROWS, EXO_COLS, 3, generator=generator)
    invalid = torch.rand(frames, ROWS, EXO_COLS, generator=generator) < 0.05
    points[invalid] = torch.nan
    return TokenGeometry(ego_dirs=0.98 * dirs, ego_centers=centers, exo_points=points)
