"""Injected faults: what can go wrong on the wire, and a seeded plan of when it does.

A :class:`FaultPlan` is a frozen description; each emulator turns it into a
:class:`FaultInjector` that owns the random generator and the rule counters, so one plan
can be shared by several emulators and each replays the same fault sequence.

Fault kinds (:class:`FaultKind`; a hyphen may stand for the underscore, as on the command
line): ``error``, ``rate_limit``, ``latency``, ``drop``, ``malformed``, ``truncate``,
``invalid_schema``.

The wire paths a path glob can match, ``*`` standing for an id there: ``/v1/allocate``,
``/v1/allocate/*``, ``/v1/allocate/*/renew``, ``/v1/inference``, ``/v1/pools``,
``/v1/pools/*``, ``/v1/health``; and the OpenAI-compatible paths of an allocation's endpoint,
``/endpoints/*/v1/chat/completions``, ``/endpoints/*/v1/completions``,
``/endpoints/*/v1/models``, and of the standalone server, ``/v1/chat/completions``,
``/v1/completions``, ``/v1/models``.
"""

from __future__ import annotations

import enum
import glob as globbing
import random
import re
import time
from collections.abc import Iterable, Sequence
from email.utils import formatdate
from fnmatch import fnmatchcase, translate
from typing import Literal

import attrs

from ._api import ROUTES as _V1_ROUTES
from ._gpuaas import ROUTES as _GPUAAS_ROUTES
from ._wire import check_delay

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


_KINDS = ", ".join(kind.value for kind in FaultKind)


def _to_kind(value: FaultKind | str) -> FaultKind:
    """A fault kind from its value; ``"rate-limit"`` is accepted for ``"rate_limit"``."""
    if isinstance(value, FaultKind):
        return value
    if isinstance(value, str):
        try:
            return FaultKind(value.strip().lower().replace("-", "_"))
        except ValueError:
            pass
    raise ValueError(f"unknown fault kind {value!r}; the fault kinds are {_KINDS}")


# Whether a path glob can match a route of the API: the glob and the route are two small
# automata, and the glob can match a route when their product reaches both ends. Glob
# tokens are a literal character, ``?``, a ``[...]`` class, or ``*`` (anything, ``/``
# included, as for ``fnmatchcase``); route tokens are a literal character or one path
# segment (one or more characters other than ``/``).

_STAR, _ONE, _SEGMENT = "*", "?", None
# Characters tried for a class or a segment: enough to find one that an id could hold.
_PROBES = "".join(map(chr, range(0x20, 0x7F))) + "\u00e9"

_GlobToken = str | re.Pattern[str]
_RouteToken = str | None


def _glob_tokens(glob: str) -> list[_GlobToken]:
    """``glob`` as tokens: a character, ``_STAR``, ``_ONE`` or a compiled class (as fnmatch)."""
    tokens: list[_GlobToken] = []
    i, n = 0, len(glob)
    while i < n:
        char = glob[i]
        i += 1
        if char == "*":
            if not tokens or tokens[-1] != _STAR:
                tokens.append(_STAR)
        elif char == "?":
            tokens.append(_ONE)
        elif char == "[":
            j = i
            if j < n and glob[j] == "!":
                j += 1
            if j < n and glob[j] == "]":
                j += 1
            while j < n and glob[j] != "]":
                j += 1
            if j >= n:
                tokens.append("[")
            else:
                tokens.append(re.compile(translate(glob[i - 1 : j + 1])))
                i = j + 1
        else:
            tokens.append(char)
    return tokens


def _route_tokens(route: str) -> list[_RouteToken]:
    return [_SEGMENT if char == "*" else char for char in route]


def _takes(token: _GlobToken, char: str) -> bool:
    if isinstance(token, re.Pattern):
        return token.match(char) is not None
    return token in (_STAR, _ONE) or token == char


def _meets(token: _GlobToken, route_token: _RouteToken) -> bool:
    """Whether one character can satisfy both a glob token and a route token."""
    if route_token is not None:
        return _takes(token, route_token)
    return any(_takes(token, char) for char in _PROBES if char != "/")


def _can_match(glob: list[_GlobToken], route: list[_RouteToken]) -> bool:
    # A state: (glob position, route position, whether the current segment has a character).
    start = (0, 0, False)
    seen = {start}
    todo = [start]
    while todo:
        i, j, started = todo.pop()
        steps: list[tuple[int, int, bool]] = []
        if i < len(glob) and glob[i] == _STAR:
            steps.append((i + 1, j, started))
        if j < len(route) and route[j] is _SEGMENT and started:
            steps.append((i, j + 1, False))
        if i == len(glob) and j == len(route):
            return True
        if i < len(glob) and j < len(route) and _meets(glob[i], route[j]):
            next_i = i if glob[i] == _STAR else i + 1
            steps.append((next_i, j, True) if route[j] is _SEGMENT else (next_i, j + 1, False))
        for step in steps:
            if step not in seen:
                seen.add(step)
                todo.append(step)
    return False


ROUTES = _V1_ROUTES + _GPUAAS_ROUTES  # either dialect's
_ROUTE_TOKENS = [_route_tokens(route) for route in ROUTES]
_ROUTE_LIST = ", ".join(ROUTES)


def _matches_a_route(glob: str) -> bool:
    """Whether ``fnmatchcase(path, glob)`` holds for some path the API answers."""
    tokens = _glob_tokens(glob)
    return any(_can_match(tokens, route) for route in _ROUTE_TOKENS)


def _check_glob(glob: str, what: str) -> None:
    if not isinstance(glob, str):
        raise ValueError(f"{what} must be a string glob, got {glob!r}")
    if not _matches_a_route(glob):
        raise ValueError(
            f"{what} {glob!r} matches no route of the API; the routes are {_ROUTE_LIST} "
            "('*' there is an id)"
        )


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

    ``kind`` is one of (a :class:`FaultKind` or its value; ``"rate-limit"`` is accepted for
    ``"rate_limit"``, as the command line spells it):

    - ``error``: a 5xx error envelope (``status``, default a random 500, 502, 503 or 504);
    - ``rate_limit``: 429 ``rate_limited`` with ``Retry-After``;
    - ``latency``: the answer is delayed by ``delay`` seconds;
    - ``drop``: the connection is dropped without an answer;
    - ``malformed``: the status is kept but the body is not JSON;
    - ``truncate``: the JSON body is cut short;
    - ``invalid_schema``: valid JSON of the wrong shape.

    An unknown kind raises ``ValueError`` listing these.

    ``method`` (any case) and ``path`` narrow the rule to some requests; ``None`` is any.
    ``path`` is an ``fnmatch`` glob (``*`` matches anything, ``/`` included) over the wire
    paths of the API, ``*`` standing for an id in them:

    - ``/v1/allocate`` (POST allocate, GET list), ``/v1/allocate/*`` (GET, DELETE release),
      ``/v1/allocate/*/renew`` (POST);
    - ``/v1/inference`` (POST);
    - ``/v1/pools``, ``/v1/pools/*`` (GET);
    - ``/v1/health`` (GET);
    - an allocation's OpenAI-compatible endpoint: ``/endpoints/*/v1/chat/completions``,
      ``/endpoints/*/v1/completions`` (POST), ``/endpoints/*/v1/models`` (GET);
    - the standalone OpenAI-compatible server: ``/v1/chat/completions``,
      ``/v1/completions`` (POST), ``/v1/models`` (GET).

    So ``"/v1/allocate/*"`` matches every allocation's path, renewals included, and
    ``"/v1/allocate*"`` every allocation path at all. A glob that can match none of them
    (``"/v1/allocations/*"``, say) raises ``ValueError``: it "matches no route of the API".

    ``times`` caps how often the rule fires. ``when="after"`` lets the server process the
    request first (an allocation is created, a release happens) and then loses (``drop``)
    or replaces (``error``, ``rate_limit``) the answer; the body faults (``malformed``,
    ``truncate``, ``invalid_schema``) always corrupt a processed answer. ``retry_after``
    is delta-seconds or a literal header value; ``retry_after_http_date`` sends it as an
    HTTP-date (wall clock). ``delay`` is the ``latency`` fault's delay in seconds, finite
    and >= 0 (default: the plan's ``latency``).
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
        if self.delay is not None:
            check_delay("delay", self.delay)
        if self.path is not None:
            _check_glob(self.path, "path")

    def matches(self, method: str, path: str) -> bool:
        """Whether this rule applies to a request."""
        return (self.method is None or self.method == method) and (
            self.path is None or fnmatchcase(path, self.path)
        )


@attrs.frozen
class FaultPlan:
    """Seeded, reproducible fault injection: per-request rates plus scripted :class:`Fault` rules.

    Each request first meets the ``rules`` in order (the first that fires wins), then,
    if ``paths`` covers it, one draw against the rates (their sum is at most 1). The fault
    kinds are ``error``, ``rate_limit``, ``latency``, ``drop``, ``malformed``,
    ``truncate`` and ``invalid_schema`` (:class:`Fault` describes each); each has a rate
    (``error_rate``, ``rate_limit_rate``, ...) but ``invalid_schema``, which only rules
    inject.

    ``paths`` entries are path prefixes (``"/v1/allocate"``) or ``(method, glob)`` pairs,
    over the wire paths of the API (``*`` standing for an id): ``/v1/allocate``,
    ``/v1/allocate/*``, ``/v1/allocate/*/renew``, ``/v1/inference``, ``/v1/pools``,
    ``/v1/pools/*``, ``/v1/health``, the OpenAI-compatible ones of allocations' endpoints
    (``/endpoints/*/v1/chat/completions``, ``/endpoints/*/v1/completions``,
    ``/endpoints/*/v1/models``) and of the standalone server (``/v1/chat/completions``,
    ``/v1/completions``, ``/v1/models``). An entry that can cover none of them raises
    ``ValueError``. Drawn errors pick a status from ``error_statuses``; drawn drops happen
    before or after the request is processed, half each.
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
        check_delay("latency", self.latency)
        if not self.error_statuses or any(not 500 <= s <= 599 for s in self.error_statuses):
            raise ValueError("error_statuses must be a non-empty list of 5xx statuses")
        for entry in self.paths or ():
            if isinstance(entry, str):
                if not _matches_a_route(globbing.escape(entry) + "*"):
                    raise ValueError(
                        f"paths prefix {entry!r} matches no route of the API; the routes are "
                        f"{_ROUTE_LIST} ('*' there is an id)"
                    )
            else:
                _check_glob(entry[1], "paths glob")

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
