"""Generator backends behind one interface (`Generator.generate(clip) -> GeneratorOutput`).

`make_generator(name, **options)` builds one by name; heavy backends import lazily.
"""
from __future__ import annotations

import importlib

from egox_model.errors import InputError
from egox_model.generator.base import EgoPrior, Generator, GeneratorOutput, StepCallback

__all__ = ["BACKENDS", "EgoPrior", "Generator", "GeneratorOutput", "StepCallback",
           "make_generator"]

#: Backend name -> "module:class".
BACKENDS = {
    "prior": "egox_model.generator.prior_backend:PriorGenerator",
    "wan": "egox_model.generator.wan:WanGenerator",
}


def make_generator(name: str, **options) -> Generator:
    """Build the backend `name` with its keyword options."""
    if name not in BACKENDS:
        raise InputError(f"unknown generator backend {name!r}; choose one of {sorted(BACKENDS)}")
    module, cls = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), cls)(**options)
