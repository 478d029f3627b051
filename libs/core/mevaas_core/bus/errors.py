"""The bus's errors."""

from __future__ import annotations


class BusError(Exception):
    """Base of the bus's errors."""


class PublishError(BusError):
    """JetStream did not store the message (no stream for the subject, a limit, or no answer in time).
    Retrying with the same ``msg_id`` is safe: a copy stored meanwhile is deduplicated."""


class RequestTimeoutError(BusError, TimeoutError):
    """No reply within the request's timeout."""


class NoRespondersError(BusError):
    """Nobody serves the subject."""


class RemoteError(BusError):
    """The server side of a request failed; ``code`` follows HTTP conventions (400, 404, 500, ...)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"remote error {code}: {message}")
        self.code = code
        self.message = message


class ServiceError(Exception):
    """Raise from a ``serve`` handler to answer with an error code and message of your choice."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
