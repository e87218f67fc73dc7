"""Typed WaveSpeed failures. Messages never contain the API key.

`task_may_exist` matters only for the submit POST: True means the request may have reached
WaveSpeed and created a paid task, so it must not be sent again blindly.
`retryable` means the same request may be sent again later (after `retry_after` if given).
"""

from __future__ import annotations


class WaveSpeedError(Exception):
    retryable: bool = False
    task_may_exist: bool = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class AuthenticationError(WaveSpeedError):
    """401/403: the API key is wrong or lacks access. Operator must fix the key."""


class BadRequestError(WaveSpeedError):
    """400: WaveSpeed refused the input; `message` is WaveSpeed's own explanation."""


class NotFoundError(WaveSpeedError):
    """404: no such task, or an output URL that is gone."""


class RateLimitedError(WaveSpeedError):
    """429: over the account's rate or concurrency limit. Nothing was created."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message, status=429)
        self.retry_after = retry_after


class ServerError(WaveSpeedError):
    """5xx. 503 means the request was refused unprocessed; 500/502/504 may hide a created task."""

    retryable = True

    def __init__(self, message: str, *, status: int, retry_after: float | None = None) -> None:
        super().__init__(message, status=status)
        self.retry_after = retry_after
        self.task_may_exist = status != 503


class ConnectionFailedError(WaveSpeedError):
    """Could not connect at all: the request was never sent."""

    retryable = True


class RequestTimeoutError(WaveSpeedError):
    """Sent, but no reply in time."""

    retryable = True
    task_may_exist = True


class ConnectionDroppedError(WaveSpeedError):
    """The connection closed after the request was sent, before a full reply."""

    retryable = True
    task_may_exist = True


class MalformedResponseError(WaveSpeedError):
    """A reply that is not the contract's JSON envelope. On a 2xx submit the task may exist."""

    retryable = True
    task_may_exist = True


class OutputTooLargeError(WaveSpeedError):
    """The output file is larger than the configured download cap."""

    def __init__(self, message: str, *, size_limit: int) -> None:
        super().__init__(message)
        self.size_limit = size_limit


class UnsafeOutputURLError(WaveSpeedError):
    """An output URL (or a redirect from it) the download guard refused: a scheme other than
    https (http only for configured hosts), an address that is not public (private, loopback,
    link-local, cloud metadata, ...), or too many redirects.

    Not retryable: the same URL would be refused again. The message names scheme, host and
    path only, never the query string, which may hold a signed token.
    """
