"""The routing vocabulary and its one entry point, ``route()``.

A routing policy is a pure, synchronous function ``(request, candidates) -> RouteDecision``.
It sees a ``RouteRequest`` and a snapshot of each candidate's ``TargetState``; it does no I/O.

``route(policy, request, states)`` is how a policy is run:

1. It drops every target that cannot take the request: marked unhealthy, circuit breaker
   open, no capacity (every warm allocation full and the pool known to lack the GPUs for
   another), or the request too big for it (``max_tokens`` above the target's limit, or the
   estimated prompt plus answer longer than its context window).
2. It honours the request's hints: a pinned ``target`` is used as is, without consulting the
   policy; a ``tier`` narrows the candidates to that tier.
3. When nothing is left it raises ``NoRouteError``, whose ``reasons`` say why, per target.
4. It calls the policy with the candidates (never empty) and checks the answer: the chosen
   target and every fallback must be one of those candidates, otherwise the policy has a bug
   and ``ConfigurationError`` names it. When targets were left out, the decision's ``reason``
   ends with which and why.

``Target``, ``TargetState`` and ``RouteRequest`` check their fields when made: a value of
the wrong type or out of range is a ``ConfigurationError`` naming the field.

A target's name identifies it, so the names of the targets routed over must be unique.
Wherever a target is passed (a pin, a fallback list, a cascade order, a weight) its name is
accepted too. Names resolve against the candidates; a name that matches no target at all is a
``ConfigurationError``. Call policies through ``route()``: called directly with a list of
states, a policy takes that list to be every target there is.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from .. import _telemetry as telemetry
from .._exceptions import ConfigurationError, NoRouteError
from .._resilience import CircuitState
from ._base import RouteDecision, RouteRequest, RoutingPolicy, Target, TargetState

__all__ = ["route"]

_NOTHING_EXCLUDED: Mapping[str, str] = MappingProxyType({})


class _Candidates(tuple[TargetState, ...]):
    """The candidates of a request some targets were left out of, and why they were."""

    excluded: Mapping[str, str]


def _excluded(candidates: Sequence[TargetState]) -> Mapping[str, str]:
    """The targets ``route()`` left out of ``candidates``, each with why."""
    return candidates.excluded if type(candidates) is _Candidates else _NOTHING_EXCLUDED


_OPEN = CircuitState.OPEN


def _why_not(state: TargetState, max_tokens: int, needed_tokens: int) -> str | None:
    """Why ``state``'s target cannot take a request right now; None when it can.

    ``needed_tokens`` is the request's estimated prompt plus its ``max_tokens``.
    """
    target = state.target
    if not state.healthy:
        return "unhealthy"
    if state.circuit is _OPEN:
        return "circuit breaker open"
    free = state.pool_free_gpus
    if (
        free is not None
        and free < target.gpus
        and state.in_flight >= state.warm_allocations * target.max_concurrency
    ):
        return (
            f"no capacity: {state.in_flight} in flight on {state.warm_allocations} warm "
            f"allocation(s) and {free} free GPU(s) in the pool, {target.gpus} needed"
        )
    if max_tokens > target.max_tokens:
        return f"max_tokens {max_tokens} above the target's limit of {target.max_tokens}"
    if needed_tokens > target.context_tokens:
        return (
            f"request needs about {needed_tokens} tokens, "
            f"the context window holds {target.context_tokens}"
        )
    return None


def _no_route(message: str, reasons: Mapping[str, str]) -> NoRouteError:
    detail = "; ".join(f"{name}: {why}" for name, why in reasons.items())
    return NoRouteError(f"{message} ({detail})" if detail else message, reasons=reasons)


def _pinned(
    request: RouteRequest, pin: Target | str, states: Sequence[TargetState | Target]
) -> TargetState:
    name = pin if isinstance(pin, str) else pin.name
    for item in states:
        state = _as_state(item)
        if state.target.name == name:
            why = _why_not(state, request.max_tokens, request.prompt_tokens + request.max_tokens)
            if why is not None:
                raise _no_route(f"the pinned target {name!r} cannot take the request", {name: why})
            return state
    raise _unknown(name, [_as_state(item).target.name for item in states])


def _unknown(name: str, known: Sequence[str]) -> ConfigurationError:
    return ConfigurationError(
        f"unknown target {name!r}; the known targets are {', '.join(map(repr, known)) or 'none'}"
    )


def _as_state(item: TargetState | Target) -> TargetState:
    if isinstance(item, TargetState):
        return item
    if isinstance(item, Target):
        return _fresh_state(item)
    raise ConfigurationError(
        f"the states routed over must be TargetStates or Targets, got {item!r}"
    )


@functools.lru_cache(maxsize=256)
def _fresh_state(target: Target) -> TargetState:
    """The state a bare ``Target`` stands for; states are frozen, so one serves every call."""
    return TargetState(target)


def _candidates(
    request: RouteRequest, states: Sequence[TargetState | Target]
) -> tuple[TargetState, ...]:
    """The states that can take ``request``; raises ``NoRouteError`` when there are none."""
    max_tokens = request.max_tokens
    needed_tokens = request.prompt_tokens + max_tokens
    tier = request.tier
    kept: list[TargetState] = []
    excluded: dict[str, str] = {}
    for item in states:
        state = item if type(item) is TargetState else _as_state(item)
        why = _why_not(state, max_tokens, needed_tokens)
        if why is None and tier is not None and state.target.tier is not tier:
            why = f"not in the requested tier ({tier.value})"
        if why is None:
            kept.append(state)
        else:
            excluded[state.target.name] = why
    if excluded:
        if not kept:
            raise _no_route("no healthy target can take the request", excluded)
        candidates = _Candidates(kept)
        candidates.excluded = excluded
        return candidates
    if not kept:
        raise NoRouteError("no targets to route to")
    return tuple(kept)


def _resolve(ref: Target | str, candidates: Sequence[TargetState]) -> TargetState | None:
    """The candidate ``ref`` names; None when that target was left out of the candidates.

    Raises ``ConfigurationError`` when ``ref`` names no target at all.
    """
    name = ref if isinstance(ref, str) else ref.name
    for state in candidates:
        if state.target.name == name:
            return state
    excluded = _excluded(candidates)
    if name in excluded:
        return None
    raise _unknown(name, [*(state.target.name for state in candidates), *excluded])


def _is_candidate(target: object, candidates: Sequence[TargetState]) -> bool:
    for state in candidates:
        if state.target is target:
            return True
    return any(state.target == target for state in candidates)


def _checked(decision: object, candidates: Sequence[TargetState], policy: object) -> RouteDecision:
    """``decision`` once it is known to name candidates, with the left-out targets noted."""
    if type(decision) is not RouteDecision and not isinstance(decision, RouteDecision):
        raise ConfigurationError(
            f"routing policy {telemetry.policy_name(policy)} returned {decision!r}, "
            "not a RouteDecision"
        )
    chosen = decision.target
    for state in candidates:  # ``_is_candidate``, for the common case: the very object
        if state.target is chosen:
            break
    else:
        if not _is_candidate(chosen, candidates):
            raise ConfigurationError(
                f"routing policy {telemetry.policy_name(policy)} chose {_describe(chosen)}, "
                f"which is not one of the healthy candidates {_names(candidates)}"
            )
    for fallback in decision.fallbacks:
        if not _is_candidate(fallback, candidates) or fallback.name == chosen.name:
            raise ConfigurationError(
                f"routing policy {telemetry.policy_name(policy)} listed {_describe(fallback)} as a "
                f"fallback; fallbacks must be healthy candidates other than the chosen one "
                f"{_names(candidates)}"
            )
    if type(candidates) is not _Candidates:
        return decision
    skipped = "; ".join(f"{name}: {why}" for name, why in candidates.excluded.items())
    return RouteDecision(
        chosen, f"{decision.reason} [skipped {skipped}]", decision.scores, decision.fallbacks
    )


def _names(candidates: Sequence[TargetState]) -> list[str]:
    return [state.target.name for state in candidates]


def _describe(target: object) -> str:
    return repr(target.name) if isinstance(target, Target) else repr(target)


def route(
    policy: RoutingPolicy,
    request: RouteRequest,
    states: Sequence[TargetState | Target],
) -> RouteDecision:
    """Route ``request`` with ``policy`` over the targets whose live state is ``states``.

    A bare ``Target`` in ``states`` stands for a fresh one: healthy, idle, nothing observed.
    Raises ``NoRouteError`` when no target can take the request (``reasons`` says why, per
    target), and ``ConfigurationError`` when the request pins an unknown target or the
    policy answers with something other than one of the candidates.
    """
    if not telemetry.recording():  # nothing would record the decision's span
        return _route(policy, request, states)
    trace = telemetry.start_route(policy)
    try:
        decision = _route(policy, request, states)
    except BaseException as exc:
        trace.end(exc)
        raise
    trace.decided(decision)
    return decision


def _route(
    policy: RoutingPolicy,
    request: RouteRequest,
    states: Sequence[TargetState | Target],
) -> RouteDecision:
    pin = request.target
    if pin is not None:
        state = _pinned(request, pin, states)
        return RouteDecision(state.target, f"pinned by the request to {state.target.name}")
    candidates = _candidates(request, states)
    return _checked(policy(request, candidates), candidates, policy)
