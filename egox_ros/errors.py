"""Errors of the ROS side, in the hierarchy rooted at `egox_model.errors.EgoxError`."""
from __future__ import annotations

from egox_model.errors import EgoxError, InputError

__all__ = ["BagError", "MessageError", "TfError", "TfExtrapolationError", "TfLookupError"]


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


class TfError(MessageError):
    """A transform TF cannot give. `may_resolve`: more TF data may still give it (a stamp
    after the newest transform, a frame not seen yet), so a live node may wait for it."""

    def __init__(self, cause: str, message: str, *, may_resolve: bool = False) -> None:
        super().__init__(cause, message)
        self.may_resolve = may_resolve


class TfLookupError(TfError):
    """No chain of transforms connects the two frames (a missing link, an unknown frame)."""

    def __init__(self, message: str, *, may_resolve: bool = False) -> None:
        super().__init__("tf_no_path", message, may_resolve=may_resolve)


class TfExtrapolationError(TfError):
    """The stamp lies outside a moving transform's stamps by more than the tolerance."""

    def __init__(self, message: str, *, may_resolve: bool = False) -> None:
        super().__init__("tf_extrapolation", message, may_resolve=may_resolve)
