"""GGAConfig: defaults and validation that names the field."""
from __future__ import annotations

import dataclasses
import math

import pytest

from egox_model.errors import ConfigError
from egox_model.generator.gga import GGAConfig


def test_defaults_are_the_release_inference_settings() -> None:
    config = GGAConfig()
    assert (config.strength, config.form, config.kernel) == (3.0, "official", "split")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.strength = 1.0  # type: ignore[misc]


@pytest.mark.parametrize("kernel", ["dense", "chunked", "split"])
@pytest.mark.parametrize("form", ["official", "power"])
def test_accepts_every_kernel_and_form(kernel: str, form: str) -> None:
    assert GGAConfig(strength=0.0, form=form, kernel=kernel).kernel == kernel


@pytest.mark.parametrize(("field", "value"), [
    ("strength", -1.0), ("strength", math.nan), ("strength", math.inf),
    ("form", "eq4"), ("kernel", "magic"), ("kernel", "flex")])
def test_errors_name_the_field_and_value(field: str, value: object) -> None:
    with pytest.raises(ConfigError) as err:
        GGAConfig(**{field: value})
    assert str(err.value).startswith(f"parameter {field}={value!r}: must be ")
