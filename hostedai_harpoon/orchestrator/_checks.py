"""Checks of the Orchestrator's arguments: a bad value is a ``ConfigurationError`` naming it,
raised before anything is sent."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from typing_extensions import TypedDict

from .. import CircuitBreakerConfig, ConfigurationError, UsageError
from .._checks import (
    API_DEFAULT_MAX_TOKENS,
    MAX_TOKENS,
    check_callable,
    check_instance,
    check_int,
    check_iterable,
    check_mapping,
    check_number,
    check_seconds,
    check_stop,
    check_temperature,
    check_text,
    ttl_seconds,
)
from .._leases import DEFAULT_LEASE_TTL
from ..routing import DEFAULT_TARGETS, RouteRequest, Target, Tier
from ._group import Limits

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = [
    "RenamedOptions",
    "check_budget",
    "check_durations",
    "check_options",
    "checked_limits",
    "checked_targets",
    "checked_warm",
    "renamed_options",
    "routed_request",
    "session_targets",
    "target_names",
]


def _known(target: Target | str) -> Target:
    """A target, or the name of one of ``DEFAULT_TARGETS``."""
    if isinstance(target, Target):
        return target
    for known in DEFAULT_TARGETS:
        if target == known.name:
            return known
    names = ", ".join(known.name for known in DEFAULT_TARGETS)
    raise ConfigurationError(
        f"targets must be Targets or names of the default targets ({names}), got {target!r}"
    )


def checked_targets(targets: Sequence[Target | str]) -> tuple[Target, ...]:
    """The targets (a name stands for the default target of that name) as a tuple, once
    known to be Targets with unique names."""
    if isinstance(targets, Target):
        raise ConfigurationError(f"targets must be a sequence of Target, got {targets!r}")
    checked = tuple(_known(target) for target in check_iterable(targets, "targets", "Target"))
    if not checked:
        raise ConfigurationError("targets must be a non-empty sequence of Target")
    names = [target.name for target in checked]
    if len(set(names)) != len(names):
        raise ConfigurationError(f"target names must be unique, got {names}")
    return checked


def check_budget(value: object) -> None:
    """A budget in dollars: ``None`` (no cap) or a finite number >= 0."""
    if value is not None:
        check_number(value, "budget", 0, float("inf"))


class RenamedOptions(TypedDict, total=False):
    """The Orchestrator's options under the names they had before this release, accepted
    (with a ``DeprecationWarning``) for one more: the clients' and ``allocate()``'s names."""

    breaker: CircuitBreakerConfig
    lease_ttl: float


_RENAMED = {"breaker": "circuit_breaker", "lease_ttl": "ttl"}


def renamed_options(
    old: Mapping[str, Any], circuit_breaker: Any, ttl: Any, default_breaker: object
) -> tuple[Any, Any]:
    """``circuit_breaker`` and ``ttl`` with the old names in ``old`` taken in, each with a
    ``DeprecationWarning``; an unknown name is refused as Python would."""
    given = {"circuit_breaker": circuit_breaker, "ttl": ttl}
    defaults = {"circuit_breaker": default_breaker, "ttl": DEFAULT_LEASE_TTL}
    for name, value in old.items():
        renamed = _RENAMED.get(name)
        if renamed is None:
            raise UsageError(f"Orchestrator() got an unexpected keyword argument {name!r}")
        warnings.warn(
            f"Orchestrator({name}=...) is now {renamed}=, as on the clients and allocate(); "
            f"{name}= will be refused in the next release",
            DeprecationWarning,
            stacklevel=3,
        )
        if given[renamed] is not defaults[renamed]:
            raise ConfigurationError(f"{name}= is the old name of {renamed}=: pass only {renamed}=")
        given[renamed] = value
    return given["circuit_breaker"], given["ttl"]


def check_options(
    policy: object, circuit_breaker: object, ttl: object, clock: object, sleep: object
) -> None:
    """The Orchestrator's arguments that are not durations or counts."""
    check_callable(policy, "policy", optional=True)
    check_instance(circuit_breaker, CircuitBreakerConfig, "circuit_breaker")
    ttl_seconds(ttl, "ttl")
    check_callable(clock, "clock")
    check_callable(sleep, "sleep")


def checked_limits(what: str, limits: Limits, names: set[str]) -> Limits:
    """``limits`` once known to be counts (one, or per known target name)."""
    values: Iterable[object]
    if isinstance(limits, Mapping):
        unknown = set(limits) - names
        if unknown:
            raise ConfigurationError(f"{what} names unknown targets: {sorted(unknown)}")
        values = limits.values()
    else:
        values = () if limits is None else (limits,)
    least = 0 if what == "min_warm" else 1
    for value in values:
        if type(value) is not int or value < least:
            raise ConfigurationError(f"{what} must be an integer >= {least}, got {value!r}")
    return limits


def checked_warm(min_warm: object, names: set[str]) -> dict[str, int]:
    """``min_warm``: ``None`` or a mapping of known target names to counts >= 0."""
    if min_warm is None:
        return {}
    warm = dict(check_mapping(min_warm, "min_warm", "target names to counts"))
    checked_limits("min_warm", warm, names)
    return warm


def target_names(
    refs: Iterable[Target | str], known: Mapping[str, Target], what: str = "targets"
) -> list[str]:
    """The names of the targets ``refs`` (targets or names; ``what`` names the argument),
    each one of ``known``."""
    if isinstance(refs, str | Target):
        refs = [refs]
    names = []
    for ref in check_iterable(refs, what, "targets or target names"):
        name = ref.name if isinstance(ref, Target) else ref
        if not isinstance(name, str) or name not in known:
            raise ConfigurationError(
                f"{what} names an unknown target {ref!r}; the known targets are {sorted(known)}"
            )
        names.append(name)
    return names


def session_targets(
    targets: Iterable[Target | str] | None, known: Mapping[str, Target]
) -> frozenset[str] | None:
    """The names of the targets a session routes over: ``None`` for all, else at least one."""
    if targets is None:
        return None
    names = frozenset(target_names(targets, known))
    if not names:
        raise ConfigurationError("targets must name at least one target (None: every target)")
    return names


def routed_request(
    engine: Engine,
    names: frozenset[str] | None,
    text_name: str,
    text: object,
    max_tokens: object,
    temperature: object,
    stop: object,
    target: Target | str | None,
    tier: Tier | str | None,
) -> RouteRequest:
    """The request a routed call over the targets ``names`` (``None``: all) makes of its
    arguments (``text_name`` is what the caller called the text), every one checked before
    anything is read, leased or sent."""
    check_text(text, text_name)
    if max_tokens is None:  # the server's default, which routing counts as the API's 256
        max_tokens = API_DEFAULT_MAX_TOKENS
    check_int(max_tokens, "max_tokens", 1, MAX_TOKENS)
    check_temperature(temperature)
    check_stop(stop)
    request = RouteRequest(text, max_tokens, target=target, tier=tier)  # type: ignore[arg-type]
    if target is not None:
        pinned = target.name if isinstance(target, Target) else target
        known = [state.target.name for state in engine.states(names)]
        if pinned not in known:
            raise ConfigurationError(
                f"target names an unknown target {pinned!r}; the known targets are {known}"
            )
    return request


def check_durations(**seconds: object) -> None:
    """Each of ``seconds`` (by argument name) a number of seconds from 0 to a week."""
    for name, value in seconds.items():
        check_seconds(value, name)
