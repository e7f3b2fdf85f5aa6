"""The failover rule, decided once: what a failed call's error says about its target.

- ``"failed"``: the target failed (the connection, a timeout, a 5xx after the client's
  retries, 408, 409, 410, an open breaker, an allocation lost, gone or never ready): the
  call moves to the next target and the failure counts against this one (its breaker and
  error rate).
- ``"busy"``: the target is fine but has no room now (429, a full pool): the call moves on,
  and nothing counts against the target.
- ``"refused"``: the request itself is at fault (400, 401, 403, 404, 422, a budget, any
  other error the package cannot fix by going elsewhere): raised at once, nothing counted.
"""

from __future__ import annotations

from typing import Literal

from .. import (
    AllocationError,
    APIError,
    APIStatusError,
    CapacityError,
    CircuitOpenError,
    HostedAIError,
    RateLimitError,
)

__all__ = ["Judgement", "fails_over", "judge", "pool_full"]

Judgement = Literal["failed", "busy", "refused"]

# Statuses that fault the request, not the target: going elsewhere would not help.
_REQUEST_STATUSES = frozenset({400, 401, 403, 404, 422})
_TARGET_STATUSES = frozenset({408, 409, 410})


def pool_full(error: BaseException) -> bool:
    """Whether ``error`` (or what caused it) says the pool has no room."""
    cause: BaseException | None = error
    while cause is not None:
        if isinstance(cause, CapacityError):
            return True
        cause = cause.__cause__
    return False


def judge(error: HostedAIError) -> Judgement:
    """What ``error`` says about the target a call failed on (see the module)."""
    if isinstance(error, APIStatusError):
        status = error.status_code
        if isinstance(error, RateLimitError) or status == 429 or pool_full(error):
            return "busy"
        if status in _REQUEST_STATUSES:
            return "refused"
        return "failed" if status >= 500 or status in _TARGET_STATUSES else "refused"
    if isinstance(error, AllocationError) and pool_full(error):
        return "busy"
    if isinstance(error, APIError | CircuitOpenError | AllocationError):
        return "failed"
    return "refused"


def fails_over(error: HostedAIError) -> bool:
    """Whether a call that failed with ``error`` should move to another target."""
    return judge(error) != "refused"
