"""Errors of the serving layer: a malformed payload, and a server that did not answer."""
from __future__ import annotations

from egox_model.errors import EgoxError, InputError

__all__ = ["RemoteError", "WireError"]


class WireError(InputError):
    """A payload that is not a valid egox wire message (truncated, wrong magic or version,
    a header that does not match its parts, an image of the wrong size)."""


class RemoteError(EgoxError):
    """The generator server could not be reached or refused the request; the message says
    which (and, for a refusal, the HTTP status and the server's reason)."""

    def __init__(self, message: str, *, status: int | None = None,
                 retryable: bool = False) -> None:
        self.status, self.retryable = status, retryable
        super().__init__(message)
