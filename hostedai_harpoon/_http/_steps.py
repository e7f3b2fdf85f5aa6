"""The step vocabulary: what a call (or a lease flow built on calls) asks its driver to do.

A *plan* is a generator that yields ``Send`` ("send this request") and ``Sleep`` ("wait this
long") and is sent back each ``Send``'s outcome: a ``Reply``, or the ``httpx.TransportError``
the attempt ended with. Lease flows ``yield from`` the plans of the calls they make, so one
pair of drivers (``_drivers.py``) carries out both.
"""

from __future__ import annotations

from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Generic, TypeVar

import httpx

from .._telemetry import Operation

if TYPE_CHECKING:
    from opentelemetry.context import Context

    from .._exceptions import APIStatusError


__all__ = ["Call", "Flow", "Reply", "Send", "SendOutcome", "Sleep", "Step"]

T = TypeVar("T")


class Call(Generic[T]):
    """One API call as the plan sees it: the request to make and how to read its answer."""

    __slots__ = (
        "absent_ok",
        "check",
        "headers",
        "idempotent",
        "json",
        "method",
        "model",
        "operation",
        "params",
        "parent",
        "parse",
        "path",
        "retry_capacity",
        "stream",
        "timeout",
    )

    def __init__(
        self,
        method: str,
        path: str,
        parse: Callable[[object, str | None], T] | None,
        *,
        operation: Operation,
        json: object = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
        stream: bool = False,
        absent_ok: frozenset[int] = frozenset(),
        retry_capacity: bool = True,
        model: str | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.parse = parse
        # What telemetry calls it: the span name and the path template.
        self.operation = operation
        self.json = json
        self.params = params
        self.headers = headers
        self.idempotent = idempotent
        self.stream = stream
        # Statuses that mean "already done": releasing what is already gone.
        self.absent_ok = absent_ok
        # False when the caller waits out full pools itself (a lease, within its own budget).
        self.retry_capacity = retry_capacity
        # The model an inference call asks for, when known (for telemetry and errors).
        self.model = model
        # This call's own per-attempt timeout, overriding the client's (``None``: the client's).
        self.timeout: httpx.Timeout | None = None
        # The trace context the call's span starts in (``None``: the caller's current one).
        self.parent: Context | None = None
        # How a dialect other than v1 reads its answers: the error an answer carries (a 2xx
        # may carry one too), ``None`` for a success. ``None`` here: v1's envelope, by status.
        # Such a call's parser is handed ``None`` for an empty body.
        self.check: Callable[[httpx.Response, bytes], APIStatusError | None] | None = None


class Send:
    """Step: send this request (keep the body unread when streaming), and be done with it,
    body read, by ``deadline_at`` (a ``_clock.monotonic()`` value, ``None``: no deadline)."""

    __slots__ = ("deadline_at", "request", "stream")

    def __init__(self, request: httpx.Request, stream: bool, deadline_at: float | None) -> None:
        self.request = request
        self.stream = stream
        self.deadline_at = deadline_at


class Sleep:
    """Step: wait this many seconds."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


class Reply:
    """What came back from one attempt: the response and, unless streaming, its body."""

    __slots__ = ("body", "response")

    def __init__(self, response: httpx.Response, body: bytes) -> None:
        self.response = response
        self.body = body


Step = Send | Sleep
SendOutcome = Reply | httpx.TransportError | None
"""What a ``Send`` comes back with (``None`` after a ``Sleep``)."""
Flow = Generator[Step, SendOutcome, T]
"""A call carried through its attempts (``Planner.plan``), or anything built of them: a
lease's enter, keepalive or release."""
