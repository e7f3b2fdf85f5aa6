"""Retry schedule, ``Retry-After`` parsing and the circuit breaker: decisions, no I/O.

Both clients ask this module the same questions (may this outcome be retried? how long to
wait? is the breaker open?) so that the sync and async twins cannot drift apart.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from datetime import UTC

import attrs
import httpx

from . import _telemetry as telemetry
from ._checks import check_flag, check_int, check_number, check_retries, check_seconds
from ._exceptions import CircuitOpenError

__all__ = [
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitState",
    "RetryPolicy",
    "parse_retry_after",
]

RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})
_NOT_DONE_STATUSES = frozenset({408, 429, 503})

# Transport errors raised before a single byte of the request left: safe to retry for any method.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout)
# Errors after which the server may or may not have acted on the request.
_MAYBE_SENT = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError)


# The window is counted in this many equal time buckets; an outcome leaves the count between
# (1 - 1/_BUCKETS) * window and window seconds after it was recorded.
_BUCKETS = 10


# Field validators: a bad value is a ``ConfigurationError`` naming the field.


def _seconds(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    check_seconds(value, attribute.name)


def _positive_seconds(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    check_seconds(value, attribute.name, positive=True)


def _retries(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    check_retries(value, attribute.name)


def _at_least_one(_: object, attribute: attrs.Attribute[int], value: int) -> None:
    check_int(value, attribute.name, 1)


def _flag(_: object, attribute: attrs.Attribute[bool], value: bool) -> None:
    check_flag(value, attribute.name)


@attrs.frozen
class RetryPolicy:
    """How failed attempts are retried.

    The wait before retry ``n`` (from 0) is a random value in ``[0, min(max_backoff,
    initial_backoff * 2**n)]`` ("full jitter"), unless the server sent ``Retry-After``: that
    is honoured when it is at most ``max_retry_after`` seconds; a longer one ends the call at
    once with the error, its ``retry_after`` set.

    ``max_retries`` is an integer from 0 to 100; the three durations are seconds from 0 to
    a week; ``jitter`` is ``True`` or ``False``. Anything else is a ``ConfigurationError``.
    """

    max_retries: int = attrs.field(default=2, validator=_retries)
    initial_backoff: float = attrs.field(default=0.5, validator=_seconds)
    max_backoff: float = attrs.field(default=8.0, validator=_seconds)
    max_retry_after: float = attrs.field(default=60.0, validator=_seconds)
    jitter: bool = attrs.field(default=True, validator=_flag)

    def backoff_delays(self) -> Iterator[float]:
        """The waits before each retry when the server gave no ``Retry-After``."""
        import backoff  # here, not at the top: it imports asyncio, which sync users don't need

        waits = backoff.expo(base=2, factor=self.initial_backoff, max_value=self.max_backoff)
        next(waits)  # backoff's generators start primed with a None
        for wait in waits:
            yield backoff.full_jitter(wait) if self.jitter else wait


def is_retryable_status(status_code: int, *, idempotent: bool) -> bool:
    """Whether an error status is worth another attempt.

    408, 429 and 503 say the server did not do the work; 500, 502 and 504 leave it open,
    so those are retried only when repeating the request is harmless.
    """
    if idempotent:
        return status_code in RETRYABLE_STATUSES
    return status_code in _NOT_DONE_STATUSES


def never_sent(exc: httpx.TransportError) -> bool:
    """Whether the failed exchange cannot have reached the server (no connection was made)."""
    return isinstance(exc, _NOT_SENT)


def is_retryable_transport_error(exc: httpx.TransportError, *, idempotent: bool) -> bool:
    """Whether a failed exchange may be tried again.

    A request that may have reached the server (a read timeout, a dropped connection) is
    retried only when repeating it is harmless: a read, a delete, or a POST carrying an
    ``Idempotency-Key``.
    """
    if isinstance(exc, _NOT_SENT):
        return True
    return idempotent and isinstance(exc, _MAYBE_SENT)


def parse_retry_after(value: str | None, *, now: Callable[[], float] = time.time) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date).

    ``None`` when the header is absent or unreadable; a date in the past gives 0.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isascii() and value.isdigit():
        return float(value)
    from email.utils import parsedate_to_datetime

    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now())


class CircuitState(enum.Enum):
    """The state of a circuit breaker.

    Legal transitions::

        CLOSED    -> OPEN       the failure rate over the window crossed the threshold
        OPEN      -> HALF_OPEN  the open duration passed; a few probe calls may go through
        HALF_OPEN -> CLOSED     every probe succeeded
        HALF_OPEN -> OPEN       a probe failed
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


_CLOSED = CircuitState.CLOSED

_TRANSITIONS: dict[CircuitState, frozenset[CircuitState]] = {
    CircuitState.CLOSED: frozenset({CircuitState.OPEN}),
    CircuitState.OPEN: frozenset({CircuitState.HALF_OPEN}),
    CircuitState.HALF_OPEN: frozenset({CircuitState.CLOSED, CircuitState.OPEN}),
}


@attrs.frozen
class CircuitBreakerConfig:
    """When a breaker trips and how it recovers.

    It opens when, over the last ``window`` seconds, at least ``minimum_calls`` attempts were
    made and the share that failed is ``failure_rate_threshold`` or more (the window is
    counted in ten time buckets, so an attempt leaves it 0.9 to 1 ``window`` later). Only
    attempts that reached the host count: a request that never left (no free connection in
    the local pool) is neither a failure nor a success. It stays open for
    ``open_duration`` seconds, then lets ``half_open_probes`` attempts through: if they all
    succeed it closes, if one fails it opens again.

    ``failure_rate_threshold`` is a number above 0 and at most 1; ``minimum_calls`` and
    ``half_open_probes`` are integers >= 1; ``window`` is seconds above 0 and
    ``open_duration`` seconds from 0, both at most a week. Anything else is a
    ``ConfigurationError``.
    """

    failure_rate_threshold: float = attrs.field(default=0.5)
    minimum_calls: int = attrs.field(default=10, validator=_at_least_one)
    window: float = attrs.field(default=30.0, validator=_positive_seconds)
    open_duration: float = attrs.field(default=15.0, validator=_seconds)
    half_open_probes: int = attrs.field(default=1, validator=_at_least_one)

    @failure_rate_threshold.validator
    def _check_rate(self, attribute: attrs.Attribute[float], value: float) -> None:
        check_number(value, attribute.name, 0.0, 1.0, above_low=True)


class CircuitBreaker:
    """A failure-rate circuit breaker for one target host. Thread-safe.

    Call ``acquire()`` before sending (it raises ``CircuitOpenError`` when the call must not
    go out), then exactly one of ``record(success)`` or ``abandon()`` with the ticket it gave.
    """

    def __init__(
        self,
        config: CircuitBreakerConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        name: str = "",
    ) -> None:
        self.config = config or CircuitBreakerConfig()
        self.name = name
        self._clock = clock
        self._lock = threading.Lock()
        self._state = CircuitState.CLOSED
        self._opened_at = 0.0
        # The window is kept as a ring of fixed time buckets: O(1) memory however many calls.
        self._width = max(self.config.window / _BUCKETS, 1e-6)
        self._bucket_ids = [-1] * _BUCKETS
        self._bucket_calls = [0] * _BUCKETS
        self._bucket_failures = [0] * _BUCKETS
        self._newest = -1
        self._calls = 0
        self._failures = 0
        self._probes_out = 0
        self._probes_ok = 0
        self.transitions: deque[tuple[CircuitState, CircuitState]] = deque(maxlen=64)

    def __repr__(self) -> str:
        return f"<CircuitBreaker {self.name!r} state={self.state.value}>"

    @property
    def state(self) -> CircuitState:
        """The state now (an open breaker whose time is up reads as half-open)."""
        with self._lock:
            self._advance(self._clock())
            return self._state

    def _move(self, to: CircuitState, now: float) -> None:
        if to not in _TRANSITIONS[self._state]:
            raise AssertionError(f"illegal breaker transition {self._state} -> {to}")
        self.transitions.append((self._state, to))
        telemetry.breaker_moved(self.name, self._state.value, to.value)
        self._state = to
        self._clear_window()
        self._probes_out = 0
        self._probes_ok = 0
        if to is CircuitState.OPEN:
            self._opened_at = now

    def _advance(self, now: float) -> None:
        if self._state is CircuitState.OPEN and now - self._opened_at >= self.config.open_duration:
            self._move(CircuitState.HALF_OPEN, now)

    def acquire(self) -> bool:
        """Ask to send one attempt; the answer is a ticket: ``True`` for a half-open probe.

        Raises ``CircuitOpenError`` when the breaker is open, or half-open with all its
        probes already out.
        """
        if self._state is _CLOSED:
            # Read without the lock: one attribute read is atomic, and a call that saw the
            # breaker closed is let through as it would have been just before it moved.
            return False
        with self._lock:
            now = self._clock()
            self._advance(now)
            if self._state is CircuitState.CLOSED:
                return False
            if self._state is CircuitState.HALF_OPEN and self._probes_out < (
                self.config.half_open_probes - self._probes_ok
            ):
                self._probes_out += 1
                return True
            wait = max(0.0, self._opened_at + self.config.open_duration - now)
            if self._state is CircuitState.OPEN:
                when = f"it lets a probe call through in {wait:.1f}s"
            else:
                when = "a probe call is out; it closes when the probes succeed"
            raise CircuitOpenError(
                f"the circuit breaker for {self.name or 'the API'} is {self._state.value} "
                f"after too many failed attempts, so the call was not sent; {when} "
                "(pass circuit_breaker=None to the client to turn breakers off)",
                retry_after=wait if self._state is CircuitState.OPEN else None,
            )

    def record(self, probe: bool, success: bool) -> None:
        """Record the outcome of an attempt that ``acquire`` let through."""
        with self._lock:
            now = self._clock()
            if probe:
                if self._state is not CircuitState.HALF_OPEN:
                    return
                self._probes_out -= 1
                if not success:
                    self._move(CircuitState.OPEN, now)
                    return
                self._probes_ok += 1
                if self._probes_ok >= self.config.half_open_probes:
                    self._move(CircuitState.CLOSED, now)
                return
            if self._state is not CircuitState.CLOSED:
                return
            bucket = max(int(now / self._width), self._newest)
            if bucket != self._newest:
                self._expire(bucket)
            slot = bucket % _BUCKETS
            self._bucket_calls[slot] += 1
            self._calls += 1
            if not success:
                self._bucket_failures[slot] += 1
                self._failures += 1
            calls = self._calls
            if (
                calls >= self.config.minimum_calls
                and self._failures >= self.config.failure_rate_threshold * calls
            ):
                self._move(CircuitState.OPEN, now)

    def abandon(self, probe: bool) -> None:
        """Give back a ticket whose attempt never finished (it was cancelled)."""
        if not probe:
            return
        with self._lock:
            if self._state is CircuitState.HALF_OPEN and self._probes_out > 0:
                self._probes_out -= 1

    def _expire(self, bucket: int) -> None:
        """Make ``bucket`` the newest, dropping the buckets that fell out of the window."""
        ids = self._bucket_ids
        for slot in range(_BUCKETS):
            if ids[slot] != -1 and ids[slot] <= bucket - _BUCKETS:
                self._calls -= self._bucket_calls[slot]
                self._failures -= self._bucket_failures[slot]
                ids[slot] = -1
                self._bucket_calls[slot] = 0
                self._bucket_failures[slot] = 0
        ids[bucket % _BUCKETS] = bucket
        self._newest = bucket

    def _clear_window(self) -> None:
        for slot in range(_BUCKETS):
            self._bucket_ids[slot] = -1
            self._bucket_calls[slot] = 0
            self._bucket_failures[slot] = 0
        self._newest = -1
        self._calls = 0
        self._failures = 0

    def reset(self) -> None:
        """Forget all history and close the breaker."""
        with self._lock:
            self._state = CircuitState.CLOSED
            self._clear_window()
            self._probes_out = 0
            self._probes_ok = 0
