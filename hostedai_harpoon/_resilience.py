"""Retry schedule, ``Retry-After`` parsing and the circuit breaker: decisions, no I/O."""

from __future__ import annotations

import enum

__all__ = ["CircuitState"]


class CircuitState(enum.Enum):
    """The state of a circuit breaker.

    Legal transitions::

        CLOSED    -> OPEN       the failure rate over the window crossed the threshold
        OPEN      -> HALF_OPEN  the open duration passed; a few probe calls may go through
        HALF_OPEN -> CLOSED     the probes succeeded
        HALF_OPEN -> OPEN       a probe failed
    """

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"
