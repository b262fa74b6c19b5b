"""The one exception hierarchy of egox (egox_model and egox_ros). Messages name the field,
the value and the fix; every user-facing entry point turns an `EgoxError` into one line on
stderr and exit status 2."""

__all__ = ["ConfigError", "EgoxError", "InputError", "ModelLoadError"]


class EgoxError(Exception):
    """Base class of every egox error."""


class InputError(EgoxError, ValueError):
    """Bad input data: wrong shape, non-finite values, invalid camera parameters."""


class ConfigError(EgoxError, ValueError):
    """An invalid setting (ROS parameter, YAML entry, CLI flag or config field); the message
    names the parameter, the value and what is allowed."""


class ModelLoadError(EgoxError):
    """A model directory or weight file is missing or does not fit the configuration."""
