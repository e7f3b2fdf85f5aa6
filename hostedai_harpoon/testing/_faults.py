"""Injected faults: what can go wrong on the wire, and a seeded plan of when it does.

A :class:`FaultPlan` is a frozen description; each emulator turns it into a
:class:`FaultInjector` that owns the random generator and the rule counters, so one plan
can be shared by several emulators and each replays the same fault sequence.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Iterable, Sequence
from email.utils import formatdate
from fnmatch import fnmatchcase
from typing import Literal

import attrs

__all__ = ["Fault", "FaultInjector", "FaultKind", "FaultPlan"]

When = Literal["before", "after"]
PathFilter = str | tuple[str, str]


class FaultKind(enum.StrEnum):
    """The ways a request can go wrong."""

    ERROR = "error"
    """A 5xx error envelope (503 here is ``service_unavailable``, never capacity)."""
    RATE_LIMIT = "rate_limit"
    """429 ``rate_limited`` with ``Retry-After``."""
    LATENCY = "latency"
    """The answer is delayed; a client whose read timeout is shorter times out."""
    DROP = "drop"
    """The connection is dropped without an answer."""
    MALFORMED = "malformed"
    """The status is kept but the body is not JSON."""
    TRUNCATE = "truncate"
    """The JSON body is cut short (the HTTP message itself is complete)."""
    INVALID_SCHEMA = "invalid_schema"
    """The body is valid JSON of the wrong shape: a field missing, numbers as strings."""


_ERROR_STATUSES = (500, 502, 503, 504)


def _to_kind(value: str) -> FaultKind:
    return FaultKind(value)


def _to_upper(value: str | None) -> str | None:
    return None if value is None else value.upper()


def _to_paths(value: Iterable[PathFilter] | None) -> tuple[PathFilter, ...] | None:
    return None if value is None else tuple(value)


def _to_rules(value: Iterable[Fault]) -> tuple[Fault, ...]:
    return tuple(value)


def _to_statuses(value: Iterable[int]) -> tuple[int, ...]:
    return tuple(value)


def _check_rate(_instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value!r}")


@attrs.frozen
class Fault:
    """One scripted fault rule, checked before the plan's rates.

    ``path`` is a glob (``*`` matches anything, ``/`` included): ``"/v1/allocate"``,
    ``"/v1/allocate/*"``. ``times`` caps how often the rule fires. ``when="after"`` lets the
    server process the request first (an allocation is created, a release happens) and
    then loses (``drop``) or replaces (``error``, ``rate_limit``) the answer; the body
    faults (``malformed``, ``truncate``, ``invalid_schema``) always corrupt a processed
    answer. ``retry_after`` is delta-seconds or a literal header value;
    ``retry_after_http_date`` sends it as an HTTP-date (wall clock). ``delay`` is the
    ``latency`` fault's delay in seconds (default: the plan's ``latency``).
    """

    kind: FaultKind = attrs.field(converter=_to_kind)
    rate: float = attrs.field(default=1.0, validator=_check_rate)
    method: str | None = attrs.field(default=None, converter=_to_upper)
    path: str | None = None
    times: int | None = None
    status: int | None = None
    retry_after: int | str | None = None
    retry_after_http_date: bool = False
    delay: float | None = None
    when: When = "before"

    def __attrs_post_init__(self) -> None:
        if self.when not in ("before", "after"):
            raise ValueError(f"when must be 'before' or 'after', got {self.when!r}")
        if self.kind is FaultKind.ERROR and self.status is not None and self.status // 100 != 5:
            raise ValueError(f"an error fault needs a 5xx status, got {self.status}")
        if self.times is not None and self.times < 0:
            raise ValueError("times cannot be negative")

    def matches(self, method: str, path: str) -> bool:
        """Whether this rule applies to a request."""
        return (self.method is None or self.method == method) and (
            self.path is None or fnmatchcase(path, self.path)
        )


@attrs.frozen
class FaultPlan:
    """Seeded, reproducible fault injection: per-request rates plus scripted :class:`Fault` rules.

    Each request first meets the ``rules`` in order (the first that fires wins), then,
    if ``paths`` covers it, one draw against the rates (their sum is at most 1). ``paths``
    entries are path prefixes (``"/v1/allocate"``) or ``(method, glob)`` pairs. Drawn
    errors pick a status from ``error_statuses``; drawn drops happen before or after the
    request is processed, half each.
    """

    error_rate: float = attrs.field(default=0.0, validator=_check_rate)
    rate_limit_rate: float = attrs.field(default=0.0, validator=_check_rate)
    latency_rate: float = attrs.field(default=0.0, validator=_check_rate)
    drop_rate: float = attrs.field(default=0.0, validator=_check_rate)
    malformed_rate: float = attrs.field(default=0.0, validator=_check_rate)
    truncate_rate: float = attrs.field(default=0.0, validator=_check_rate)
    seed: int = attrs.field(default=0, kw_only=True)
    paths: tuple[PathFilter, ...] | None = attrs.field(
        default=None, converter=_to_paths, kw_only=True
    )
    retry_after: int | str = attrs.field(default=1, kw_only=True)
    latency: float = attrs.field(default=0.05, kw_only=True)
    error_statuses: tuple[int, ...] = attrs.field(
        default=_ERROR_STATUSES, converter=_to_statuses, kw_only=True
    )
    rules: tuple[Fault, ...] = attrs.field(default=(), converter=_to_rules, kw_only=True)

    def __attrs_post_init__(self) -> None:
        if sum(rate for _, rate in self.rates()) > 1.0 + 1e-9:
            raise ValueError("the fault rates add up to more than 1")
        if not self.error_statuses or any(not 500 <= s <= 599 for s in self.error_statuses):
            raise ValueError("error_statuses must be a non-empty list of 5xx statuses")

    def rates(self) -> Sequence[tuple[FaultKind, float]]:
        """The rate-based faults, in the order a draw is matched against them."""
        return (
            (FaultKind.ERROR, self.error_rate),
            (FaultKind.RATE_LIMIT, self.rate_limit_rate),
            (FaultKind.LATENCY, self.latency_rate),
            (FaultKind.DROP, self.drop_rate),
            (FaultKind.MALFORMED, self.malformed_rate),
            (FaultKind.TRUNCATE, self.truncate_rate),
        )

    def covers(self, method: str, path: str) -> bool:
        """Whether the rate-based faults apply to a request."""
        if self.paths is None:
            return True
        return any(
            path.startswith(entry)
            if isinstance(entry, str)
            else entry[0].upper() == method and fnmatchcase(path, entry[1])
            for entry in self.paths
        )


@attrs.frozen
class InjectedFault:
    """A fault decided for one request, with every detail resolved."""

    kind: FaultKind
    when: When = "before"
    status: int | None = None
    retry_after: str | None = None
    delay: float = 0.0


class FaultInjector:
    """Decides, request by request and in order, which fault (if any) a :class:`FaultPlan` injects.

    Not thread-safe by itself: the emulator calls it under its lock.
    """

    def __init__(self, plan: FaultPlan) -> None:
        self.plan = plan
        self._rng = random.Random(plan.seed)
        self._fired = [0] * len(plan.rules)
        self._draws_rates = any(rate > 0 for _, rate in plan.rates())

    def decide(self, method: str, path: str) -> InjectedFault | None:
        """The fault for the next request, or ``None``."""
        for index, rule in enumerate(self.plan.rules):
            if not rule.matches(method, path):
                continue
            if rule.times is not None and self._fired[index] >= rule.times:
                continue
            if rule.rate < 1.0 and self._rng.random() >= rule.rate:
                continue
            self._fired[index] += 1
            return self._resolve(rule)
        if not self._draws_rates or not self.plan.covers(method, path):
            return None
        draw = self._rng.random()
        for kind, rate in self.plan.rates():
            if draw < rate:
                when: When = (
                    self._rng.choice(("before", "after")) if kind is FaultKind.DROP else "before"
                )
                return self._resolve(Fault(kind, when=when))
            draw -= rate
        return None

    def _resolve(self, fault: Fault) -> InjectedFault:
        status = fault.status
        retry_after = fault.retry_after
        if fault.kind is FaultKind.ERROR and status is None:
            status = self._rng.choice(self.plan.error_statuses)
        elif fault.kind is FaultKind.RATE_LIMIT:
            status = 429
            retry_after = self.plan.retry_after if retry_after is None else retry_after
        header = None
        if isinstance(retry_after, str):
            header = retry_after
        elif retry_after is not None:
            header = (
                formatdate(time.time() + retry_after, usegmt=True)
                if fault.retry_after_http_date
                else str(retry_after)
            )
        delay = self.plan.latency if fault.delay is None else fault.delay
        return InjectedFault(
            fault.kind,
            when=fault.when,
            status=status,
            retry_after=header,
            delay=delay if fault.kind is FaultKind.LATENCY else 0.0,
        )
