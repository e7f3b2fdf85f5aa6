"""Clocks that drive the emulator's readiness delays and TTL expiry."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime
from typing import Protocol

__all__ = ["EPOCH", "Clock", "ManualClock", "SystemClock", "format_timestamp"]

EPOCH = datetime(2026, 1, 1, tzinfo=UTC).timestamp()
"""2026-01-01T00:00:00Z as epoch seconds: where a :class:`ManualClock` starts by default."""


class Clock(Protocol):
    """Anything that tells the time in epoch seconds."""

    def now(self) -> float:
        """The current time, in seconds since the Unix epoch."""
        ...


class SystemClock:
    """The real wall clock (:func:`time.time`)."""

    def now(self) -> float:
        """The current wall-clock time, in seconds since the Unix epoch."""
        return time.time()

    def __repr__(self) -> str:
        return "SystemClock()"


class ManualClock:
    """A clock that only moves when told to, so tests control readiness and expiry exactly."""

    def __init__(self, start: float | datetime = EPOCH) -> None:
        self._now = start.timestamp() if isinstance(start, datetime) else float(start)
        self._lock = threading.Lock()

    def now(self) -> float:
        """The clock's current time, in seconds since the Unix epoch."""
        return self._now

    def advance(self, seconds: float) -> float:
        """Move the clock forward by ``seconds`` and return the new time."""
        if seconds < 0:
            raise ValueError("a ManualClock cannot go backwards")
        with self._lock:
            self._now += seconds
            return self._now

    def __repr__(self) -> str:
        return f"ManualClock({format_timestamp(self._now)!r})"


def format_timestamp(epoch_seconds: float) -> str:
    """An RFC 3339 UTC timestamp with millisecond precision, as the wire carries it."""
    moment = datetime.fromtimestamp(epoch_seconds, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{moment.microsecond // 1000:03d}Z"
