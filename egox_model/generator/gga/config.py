"""`GGAConfig`: the settings of Geometry-Guided Attention (strength, bias form, kernel)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from egox_model.errors import InputError

__all__ = ["GGAConfig", "GGAForm", "GGAKernel"]

GGAForm = Literal["official", "power"]
GGAKernel = Literal["dense", "chunked", "split"]


@dataclass(frozen=True)
class GGAConfig:
    """GGA settings.

    strength: lambda (>= 0); 3 at inference, 1 in training (official release).
    form: "official" (release code) or "power" (paper Eq. 7).
    kernel: "dense" (N x N bias, reference), "split" or "chunked" (no N x N tensor).
    """

    strength: float = 3.0
    form: GGAForm = "official"
    kernel: GGAKernel = "split"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.strength) and self.strength >= 0):
            raise InputError(f"GGAConfig.strength must be a finite number >= 0, "
                             f"got {self.strength!r}")
        if self.form not in get_args(GGAForm):
            raise InputError(f"GGAConfig.form must be one of {get_args(GGAForm)}, "
                             f"got {self.form!r}")
        if self.kernel not in get_args(GGAKernel):
            raise InputError(f"GGAConfig.kernel must be one of {get_args(GGAKernel)}, "
                             f"got {self.kernel!r}")
