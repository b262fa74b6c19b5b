"""Exceptions raised by egox_model. Messages name the field, the value and the fix."""

__all__ = ["EgoxError", "InputError", "ModelLoadError"]


class EgoxError(Exception):
    """Base class of every egox error."""


class InputError(EgoxError, ValueError):
    """Bad input data: wrong shape, non-finite values, invalid camera parameters."""


class ModelLoadError(EgoxError):
    """A model directory or weight file is missing or does not fit the configuration."""
