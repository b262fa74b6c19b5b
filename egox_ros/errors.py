"""Errors of the ROS side, in the hierarchy rooted at `egox_model.errors.EgoxError`."""
from __future__ import annotations

from egox_model.errors import EgoxError, InputError

__all__ = ["BagError", "MessageError"]


class MessageError(InputError):
    """A ROS message that cannot be used (unknown encoding, size mismatch, NaN pose, ...).

    `cause` is a stable short key ("unknown_encoding", "size_mismatch", ...) under which the
    node counts the drop and logs it once.
    """

    def __init__(self, cause: str, message: str) -> None:
        super().__init__(message)
        self.cause = cause


class BagError(EgoxError):
    """A bag cannot be read or lacks what the conversion needs."""
