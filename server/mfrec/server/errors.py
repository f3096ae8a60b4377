"""Errors of the serving core; the servicer maps each to one gRPC status code."""

from __future__ import annotations


class ServingError(Exception):
    """Base of every error the core reports to a caller; the message is safe to return."""


class InvalidRequest(ServingError):
    """A request field is missing or out of range (INVALID_ARGUMENT)."""


class NotFound(ServingError):
    """A required id or file does not exist (NOT_FOUND)."""


class NoModel(ServingError):
    """No model is loaded yet (UNAVAILABLE for recommendations)."""

    def __init__(self) -> None:
        super().__init__("no model loaded: train one with the Train RPC or `mfrec train`")


class JobConflict(ServingError):
    """A training job is already running (ABORTED)."""


class FailedPrecondition(ServingError):
    """The call needs state the server does not have yet (FAILED_PRECONDITION)."""
