"""`GGAConfig`: the settings of Geometry-Guided Attention (strength, bias form, kernel)."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from egox_model.config import check_settings, setting

__all__ = ["GGAConfig", "GGAForm", "GGAKernel"]

GGAForm = Literal["official", "power"]
GGAKernel = Literal["dense", "chunked", "split"]


@dataclass(frozen=True)
class GGAConfig:
    """GGA settings (see the package docstring for the bias and the kernels)."""

    strength: float = setting(3.0, "lambda: 3 at inference, 1 in training (official "
                              "release); 0 = stock attention", low=0.0)
    form: GGAForm = setting("official", "bias form: 'official' (the release's code) or "
                            "'power' (paper Eq. 7)")
    kernel: GGAKernel = setting("split", "'split' (fastest, caches an ego x exo bias per "
                                "clip), 'chunked' (least memory) or 'dense' (N x N bias, "
                                "reference for small clips)")

    def __post_init__(self) -> None:
        check_settings(self)
