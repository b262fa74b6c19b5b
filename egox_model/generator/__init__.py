"""Generator backends behind one interface (`Generator.generate(clip) -> GeneratorOutput`).

`make_generator(GeneratorConfig(backend=...))` builds one; heavy backends import lazily.
"""
from __future__ import annotations

import importlib

from egox_model.generator.base import Generator, StepCallback
from egox_model.generator.config import BACKENDS, GeneratorConfig
from egox_model.output import GeneratorOutput
from egox_model.prior import EgoPrior

__all__ = ["BACKENDS", "EgoPrior", "Generator", "GeneratorConfig", "GeneratorOutput",
           "StepCallback", "make_generator"]


def make_generator(config: GeneratorConfig) -> Generator:
    """Build the backend `config.backend` from `config` (the config validated the name)."""
    module, cls = BACKENDS[config.backend].split(":")
    return getattr(importlib.import_module(module), cls).from_config(config)
