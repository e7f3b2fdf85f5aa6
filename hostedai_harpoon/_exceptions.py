"""The errors the SDK raises. Every one of them is a ``HostedAIError``.

```
HostedAIError
├── ConfigurationError            missing/invalid base URL, key, pool, argument; insecure URL
│   └── UsageError                the SDK used the wrong way (sync for async, a lease not entered)
├── APIError
│   ├── APIConnectionError
│   │   └── APITimeoutError
│   ├── APIStatusError            .status_code .request_id .code .body
│   │   ├── BadRequestError (400) AuthenticationError (401) PermissionDeniedError (403)
│   │   ├── NotFoundError (404) ConflictError (409) GoneError (410)
│   │   ├── UnprocessableEntityError (422) RateLimitError (429)
│   │   ├── InternalServerError (>=500)
│   │   └── CapacityError         (503 capacity_exhausted)
│   └── ResponseValidationError   the server answered something that breaks the contract
├── CircuitOpenError              the breaker refused the call without sending it
├── AllocationError               allocation failed / never became ready / release gave up
├── OrchestratorClosedError       the orchestrator or session is closed
├── BudgetExceededError           a session's budget is spent; nothing was sent
├── NoRouteError                  no healthy target could take the request
└── AllAttemptsFailedError        targets took the request, and every attempt failed (.attempts)
```
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AllocationError",
    "AuthenticationError",
    "BadRequestError",
    "CapacityError",
    "CircuitOpenError",
    "ConfigurationError",
    "ConflictError",
    "GoneError",
    "HostedAIError",
    "InternalServerError",
    "NoRouteError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseValidationError",
    "UnprocessableEntityError",
    "UsageError",
]


class HostedAIError(Exception):
    """Base class of every error raised by hostedai-harpoon."""

    def __reduce__(self) -> tuple[object, ...]:
        # The subclasses take keyword arguments: pickle (for multiprocessing, pytest-xdist)
        # rebuilds them from their state instead of calling __init__ again.
        return (_rebuild, (type(self), self.args, dict(self.__dict__)))


def _rebuild(
    cls: type[HostedAIError], args: tuple[object, ...], state: dict[str, object]
) -> HostedAIError:
    error = cls.__new__(cls, *args)
    error.args = args
    error.__dict__.update(state)
    return error


class ConfigurationError(HostedAIError):
    """The client was configured, or a call made, with a missing or invalid value."""


class UsageError(ConfigurationError, TypeError):
    """The SDK was used the wrong way: a sync object in async code or the reverse, a lease
    used outside its ``with`` block. The message names the fix."""


class APIError(HostedAIError):
    """A call to the HostedAI API did not succeed.

    ``request_id`` is the server's ``x-request-id`` when one was received.
    """

    def __init__(self, message: str, *, request_id: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = request_id


class APIConnectionError(APIError):
    """The request could not be sent or the connection broke before a full answer."""

    # Set by the client when no attempt of the call can have reached the server (each one
    # failed to connect): a create that failed so made nothing.
    _unsent = False


class APITimeoutError(APIConnectionError):
    """The request timed out, or the call's deadline ran out."""


class ResponseValidationError(APIError):
    """The server answered with something that breaks the wire contract."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        request_id: str | None = None,
        body: object = None,
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.status_code = status_code
        self.body = body


class APIStatusError(APIError):
    """The server answered with a 4xx or 5xx status.

    ``code`` is the machine-readable ``error.code`` of the envelope (``None`` when the
    body had none), ``body`` the decoded body (or its text when it was not JSON).
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        request_id: str | None = None,
        code: str | None = None,
        body: object = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, request_id=request_id)
        self.status_code = status_code
        self.code = code
        self.body = body
        self.retry_after = retry_after

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status_code={self.status_code}, code={self.code!r}, "
            f"message={self.message!r}, request_id={self.request_id!r})"
        )

    def __str__(self) -> str:
        parts = [f"{self.status_code}"]
        if self.code:
            parts.append(self.code)
        text = f"{' '.join(parts)}: {self.message}"
        if self.request_id:
            text += f" (request_id={self.request_id})"
        return text


class BadRequestError(APIStatusError):
    """400: the request was malformed."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing or invalid."""


class PermissionDeniedError(APIStatusError):
    """403: the API key may not do this."""


class NotFoundError(APIStatusError):
    """404: no such allocation or pool."""


class ConflictError(APIStatusError):
    """409: idempotency conflict, or the allocation is not ready."""


class GoneError(APIStatusError):
    """410: the allocation expired or was released."""


class UnprocessableEntityError(APIStatusError):
    """422: the request was well-formed but invalid (unknown model, bad field)."""


class RateLimitError(APIStatusError):
    """429: too many requests. ``retry_after`` holds the server's hint, in seconds."""


class InternalServerError(APIStatusError):
    """A 5xx answer other than ``capacity_exhausted``."""


class CapacityError(APIStatusError):
    """503 ``capacity_exhausted``: the pool has no free GPUs. ``retry_after`` may be set."""


class CircuitOpenError(HostedAIError):
    """The circuit breaker for the target host is open; the call was not sent.

    ``retry_after`` says how many seconds remain until the breaker lets a probe through.
    """

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AllocationError(HostedAIError):
    """An allocation failed, never became ready, was lost, or could not be released.

    ``allocation_id`` names the allocation when one is known.
    """

    def __init__(self, message: str, *, allocation_id: str | None = None) -> None:
        super().__init__(message)
        self.allocation_id = allocation_id


class NoRouteError(HostedAIError):
    """No healthy target could take the request.

    ``reasons`` maps each target's name to why it was ruled out.
    """

    def __init__(self, message: str, *, reasons: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.reasons: dict[str, str] = dict(reasons or {})


_STATUS_CLASSES: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    410: GoneError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def status_error_class(status_code: int, code: str | None) -> type[APIStatusError]:
    """The error class for an HTTP error status and its envelope ``code``."""
    if status_code == 503 and code == "capacity_exhausted":
        return CapacityError
    if status_code >= 500:
        return InternalServerError
    return _STATUS_CLASSES.get(status_code, APIStatusError)


# The Orchestrator's errors (``hostedai_harpoon.orchestrator``).


class OrchestratorClosedError(HostedAIError):
    """The orchestrator (or the session) is closed, or closed while the call was in flight."""


class BudgetExceededError(HostedAIError):
    """A session's budget is spent: the call was refused before anything was sent.

    ``budget`` is the cap and ``spent`` the estimated dollars spent so far.
    """

    def __init__(self, message: str, *, budget: float, spent: float) -> None:
        super().__init__(message)
        self.budget = budget
        self.spent = spent


class AllAttemptsFailedError(HostedAIError):
    """Every attempt of a routed call failed for reasons that say nothing about the request.

    Not a ``NoRouteError``: targets did take the request, and each attempt failed.
    ``attempts`` holds each attempt (an ``orchestrator.Attempt``: target, allocation id,
    error, seconds), in order; ``reasons`` maps each target tried to its last error.
    """

    def __init__(
        self,
        message: str,
        *,
        attempts: tuple[Any, ...],
        reasons: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        # ``Any``: this floor of the package names nothing of the orchestrator above it.
        self.attempts: tuple[Any, ...] = attempts
        self.reasons: dict[str, str] = dict(reasons or {})


__all__ += ["AllAttemptsFailedError", "BudgetExceededError", "OrchestratorClosedError"]
