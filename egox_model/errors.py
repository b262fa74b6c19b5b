"""The one exception hierarchy of egox (egox_model and egox_ros). Messages name the field,
the value and the fix; every user-facing entry point turns an `EgoxError` into one line on
stderr and exit status 2."""
from __future__ import annotations

from typing import Any

__all__ = ["ConfigError", "EgoxError", "InputError", "ModelLoadError"]


class EgoxError(Exception):
    """Base class of every egox error."""


class InputError(EgoxError, ValueError):
    """Bad input data: wrong shape, non-finite values, invalid camera parameters."""


class ConfigError(EgoxError, ValueError):
    """An invalid setting (ROS parameter, YAML entry, CLI flag or config field).

    With `key` the message reads "parameter KEY=VALUE: REASON"; `within(prefix)` re-issues
    the error for the same setting seen from an enclosing config (`fusion.momentum` ->
    `prior.fusion.momentum`).
    """

    def __init__(self, reason: str, *, key: str | None = None, value: Any = None) -> None:
        self.reason, self.key, self.value = reason, key, value
        super().__init__(f"parameter {key}={value!r}: {reason}" if key else reason)

    def within(self, prefix: str) -> ConfigError:
        """The same error with the setting's name prefixed by `prefix` (a group name)."""
        if self.key is not None:
            return ConfigError(self.reason, key=f"{prefix}.{self.key}", value=self.value)
        return ConfigError(f"{prefix}: {self.reason}")


class ModelLoadError(EgoxError):
    """A model directory or weight file is missing or does not fit the configuration."""
