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

import enum
import functools
import math
import zlib
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any, NoReturn, Protocol, TypeVar

import attrs

from .._exceptions import ConfigurationError, NoRouteError
from .._resilience import CircuitState

__all__ = [
    "InferenceOutcome",
    "RouteDecision",
    "RouteRequest",
    "RoutingPolicy",
    "Target",
    "TargetState",
    "Tier",
    "route",
]


@functools.total_ordering
class Tier(enum.Enum):
    """The size class of a target. Tiers are ordered: ``SMALL < MEDIUM < LARGE``.

    ``CascadePolicy`` escalates to the next tier up; ``ComplexityPolicy`` sends simple
    prompts to the smallest tier and complex ones to the largest. Wherever a tier is
    passed, its value (``"small"``, ``"medium"``, ``"large"``) is accepted.
    """

    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"

    rank: int
    """The tier's place in the order: 0 for the smallest."""

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Tier):
            return NotImplemented
        return self.rank < other.rank


# A plain attribute, not a property: policies read it on every decision.
for _rank, _tier in enumerate(Tier):
    _tier.rank = _rank
_TIERS_BY_VALUE = {tier.value: tier for tier in Tier}


def _to_tier(value: Tier | str) -> Tier:
    if isinstance(value, Tier):
        return value
    tier = _TIERS_BY_VALUE.get(value) if isinstance(value, str) else None
    if tier is None:
        known = ", ".join(_TIERS_BY_VALUE)
        raise ConfigurationError(f"unknown tier {value!r}; expected one of {known}")
    return tier


def _to_optional_tier(value: Tier | str | None) -> Tier | None:
    return None if value is None else _to_tier(value)


# Field validators. Each raises ``ConfigurationError`` naming the class, the field, what it
# must be and what it got. The common case (the right type, in range) is checked first.


def _invalid(
    instance: object, attribute: attrs.Attribute[Any], must: str, value: object
) -> NoReturn:
    raise ConfigurationError(
        f"{type(instance).__name__}.{attribute.name} must be {must}, got {value!r}"
    )


def _is_int(value: object) -> bool:
    return type(value) is int or (isinstance(value, int) and not isinstance(value, bool))


def _is_number(value: object) -> bool:
    return (
        type(value) is float
        or type(value) is int
        or (isinstance(value, (int, float)) and not isinstance(value, bool))
    )


def _string(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if type(value) is not str and not isinstance(value, str):
        _invalid(instance, attribute, "a string", value)


def _non_empty(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if type(value) is not str and not isinstance(value, str):
        _invalid(instance, attribute, "a non-empty string", value)
    if not value:
        raise ConfigurationError(f"{type(instance).__name__}.{attribute.name} must not be empty")


def _optional_name(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None:
        _non_empty(instance, attribute, value)


def _flag(instance: object, attribute: attrs.Attribute[Any], value: bool) -> None:
    if value is not True and value is not False:
        _invalid(instance, attribute, "True or False", value)


def _at_least_one(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not _is_int(value) or value < 1:
        _invalid(instance, attribute, "a whole number >= 1", value)


def _count(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not _is_int(value) or value < 0:
        _invalid(instance, attribute, "a whole number >= 0", value)


def _optional_count(instance: object, attribute: attrs.Attribute[Any], value: int | None) -> None:
    if value is not None and (not _is_int(value) or value < 0):
        _invalid(instance, attribute, "a whole number >= 0 or None", value)


def _non_negative(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not _is_number(value) or not 0 <= value < math.inf:
        _invalid(instance, attribute, "a finite number >= 0", value)


def _optional_non_negative(
    instance: object, attribute: attrs.Attribute[Any], value: float | None
) -> None:
    if value is not None and (not _is_number(value) or not 0 <= value < math.inf):
        _invalid(instance, attribute, "a finite number >= 0 or None", value)


def _fraction(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not _is_number(value) or not 0 <= value <= 1:
        _invalid(instance, attribute, "a number between 0 and 1", value)


def _a_target(instance: object, attribute: attrs.Attribute[Any], value: Target) -> None:
    if type(value) is not Target and not isinstance(value, Target):
        _invalid(instance, attribute, "a Target", value)


def _a_circuit_state(
    instance: object, attribute: attrs.Attribute[Any], value: CircuitState
) -> None:
    if not isinstance(value, CircuitState):
        known = ", ".join(f"CircuitState.{state.name}" for state in CircuitState)
        _invalid(instance, attribute, f"one of {known}", value)


def _a_pin(instance: object, attribute: attrs.Attribute[Any], value: Target | str | None) -> None:
    if value is None or isinstance(value, Target):
        return
    if not isinstance(value, str):
        _invalid(instance, attribute, "a Target, a target's name or None", value)
    if not value:
        raise ConfigurationError(f"{type(instance).__name__}.{attribute.name} must not be empty")


def _model_from_name(target: Target) -> str:
    return target.name


def _hourly_cost(target: Target) -> float:
    gpus, price = target.gpus, target.cost_per_gpu_hour
    if _is_int(gpus) and _is_number(price):
        return gpus * price
    return math.nan  # a field of the wrong type: its validator, run next, says which


@attrs.frozen(cache_hash=True)
class Target:
    """A routable deployment: a model on a pool, with what it costs and what it can take.

    ``name`` identifies the target; ``model`` defaults to it. ``pool`` and ``gpu_type`` of
    ``None`` mean the account's default pool and whatever GPU it has. ``max_concurrency`` is
    how many requests one allocation of the target serves at once; ``context_tokens`` is its
    context window and ``max_tokens`` the most tokens it generates for one request.
    ``cost_per_hour`` is derived: ``gpus * cost_per_gpu_hour``.
    """

    name: str = attrs.field(validator=_non_empty)
    tier: Tier = attrs.field(converter=_to_tier, kw_only=True)
    model: str = attrs.field(
        default=attrs.Factory(_model_from_name, takes_self=True),
        validator=_non_empty,
        kw_only=True,
    )
    pool: str | None = attrs.field(default=None, validator=_optional_name, kw_only=True)
    gpus: int = attrs.field(default=1, validator=_at_least_one, kw_only=True)
    gpu_type: str | None = attrs.field(default=None, validator=_optional_name, kw_only=True)
    cost_per_gpu_hour: float = attrs.field(default=0.0, validator=_non_negative, kw_only=True)
    max_concurrency: int = attrs.field(default=8, validator=_at_least_one, kw_only=True)
    context_tokens: int = attrs.field(default=8192, validator=_at_least_one, kw_only=True)
    max_tokens: int = attrs.field(default=4096, validator=_at_least_one, kw_only=True)
    cost_per_hour: float = attrs.field(
        init=False, default=attrs.Factory(_hourly_cost, takes_self=True)
    )
    """What one allocation of this target costs per hour: GPUs times the GPU-hour price."""


@attrs.frozen
class TargetState:
    """A cheap snapshot of one target's live state: all a routing policy may look at.

    ``healthy`` is the last health verdict; ``circuit`` the breaker's state (a half-open
    breaker still routes: probes are allowed). ``in_flight`` counts requests being served
    and ``warm_allocations`` the ready allocations held for the target. Latencies are in
    seconds (an exponentially weighted moving average and recent percentiles) and ``None``
    until observed; ``error_rate`` is the recent share of failed calls. ``pool_free_gpus``
    is the pool's free capacity when known.
    """

    target: Target = attrs.field(validator=_a_target)
    healthy: bool = attrs.field(default=True, validator=_flag)
    circuit: CircuitState = attrs.field(default=CircuitState.CLOSED, validator=_a_circuit_state)
    in_flight: int = attrs.field(default=0, validator=_count)
    warm_allocations: int = attrs.field(default=0, validator=_count)
    latency_ewma: float | None = attrs.field(default=None, validator=_optional_non_negative)
    latency_p50: float | None = attrs.field(default=None, validator=_optional_non_negative)
    latency_p95: float | None = attrs.field(default=None, validator=_optional_non_negative)
    error_rate: float = attrs.field(default=0.0, validator=_fraction)
    pool_free_gpus: int | None = attrs.field(default=None, validator=_optional_count)

    @property
    def latency(self) -> float | None:
        """The best latency estimate at hand: the moving average, else the median, else None."""
        if self.latency_ewma is not None:
            return self.latency_ewma
        return self.latency_p50


@attrs.frozen
class RouteRequest:
    """What is being routed: the prompt, the answer length wanted, and optional hints.

    ``target`` pins the request to one target (a ``Target`` or its name): ``route()`` then
    uses it without consulting the policy, or raises ``NoRouteError`` when it cannot take
    the request. ``tier`` narrows the candidates to one tier and lets the policy choose
    among them.
    """

    prompt: str = attrs.field(validator=_string)
    max_tokens: int = attrs.field(default=256, validator=_at_least_one)
    target: Target | str | None = attrs.field(default=None, validator=_a_pin, kw_only=True)
    tier: Tier | None = attrs.field(default=None, converter=_to_optional_tier, kw_only=True)

    @property
    def prompt_tokens(self) -> int:
        """A rough estimate of the prompt's length in tokens (about four characters each)."""
        return len(self.prompt) // 4 + 1


_NOTHING_EXCLUDED: Mapping[str, str] = MappingProxyType({})


@attrs.frozen
class RouteDecision:
    """Where a request goes and why.

    ``reason`` is for people (logs, traces). ``scores`` holds the numbers the policy
    decided on, by name: per target for most policies, per feature for
    ``ComplexityPolicy``; treat it as read-only, policies may share it between decisions.
    ``fallbacks`` lists other healthy targets to try, in order, if
    the chosen one fails.
    """

    target: Target
    reason: str
    scores: Mapping[str, float] = attrs.field(factory=dict)
    fallbacks: tuple[Target, ...] = ()


class RoutingPolicy(Protocol):
    """Chooses a target for a request: ``(request, candidates) -> RouteDecision``.

    ``candidates`` are the targets that can take the request (never empty). The decision's
    target and fallbacks must be among them. A policy is synchronous and pure: no I/O, no
    clock, no global random state; the same inputs give the same decision. A plain
    function with this signature is a policy.
    """

    def __call__(
        self, request: RouteRequest, candidates: Sequence[TargetState], /
    ) -> RouteDecision:
        """Choose a target for ``request`` among ``candidates``."""
        ...


class InferenceOutcome(Protocol):
    """The part of an inference result that routing looks at (``InferenceResult`` has it)."""

    @property
    def text(self) -> str:
        """The generated text."""
        ...

    @property
    def finish_reason(self) -> str:
        """Why generation stopped: ``"stop"`` or ``"length"``."""
        ...


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


def _policy_name(policy: object) -> str:
    return getattr(policy, "__qualname__", None) or type(policy).__qualname__


def _is_candidate(target: object, candidates: Sequence[TargetState]) -> bool:
    for state in candidates:
        if state.target is target:
            return True
    return any(state.target == target for state in candidates)


def _checked(decision: object, candidates: Sequence[TargetState], policy: object) -> RouteDecision:
    """``decision`` once it is known to name candidates, with the left-out targets noted."""
    if type(decision) is not RouteDecision and not isinstance(decision, RouteDecision):
        raise ConfigurationError(
            f"routing policy {_policy_name(policy)} returned {decision!r}, not a RouteDecision"
        )
    chosen = decision.target
    if not _is_candidate(chosen, candidates):
        raise ConfigurationError(
            f"routing policy {_policy_name(policy)} chose {_describe(chosen)}, "
            f"which is not one of the healthy candidates {_names(candidates)}"
        )
    for fallback in decision.fallbacks:
        if not _is_candidate(fallback, candidates) or fallback.name == chosen.name:
            raise ConfigurationError(
                f"routing policy {_policy_name(policy)} listed {_describe(fallback)} as a "
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
    pin = request.target
    if pin is not None:
        state = _pinned(request, pin, states)
        return RouteDecision(state.target, f"pinned by the request to {state.target.name}")
    candidates = _candidates(request, states)
    return _checked(policy(request, candidates), candidates, policy)


def _preference(state: TargetState) -> tuple[bool, bool, float, int, str]:
    """Sort key among targets of one tier: closed breaker, warm, cheap, idle, then by name."""
    return (
        state.circuit is not CircuitState.CLOSED,
        state.warm_allocations == 0,
        state.target.cost_per_hour,
        state.in_flight,
        state.target.name,
    )


def _smallest_first(state: TargetState) -> tuple[int, tuple[bool, bool, float, int, str]]:
    return (state.target.tier.rank, _preference(state))


def _largest_first(state: TargetState) -> tuple[int, tuple[bool, bool, float, int, str]]:
    return (-state.target.tier.rank, _preference(state))


def _by_tier(candidates: Sequence[TargetState], largest: bool) -> Sequence[TargetState]:
    """The candidates from the smallest tier up (or the largest down), preferred first in a tier."""
    if len(candidates) == 2:
        first, second = candidates
        first_rank, second_rank = first.target.tier.rank, second.target.tier.rank
        if first_rank != second_rank:
            in_order = (first_rank < second_rank) is not largest
            return candidates if in_order else (second, first)
    if len(candidates) == 1:
        return candidates
    return sorted(candidates, key=_largest_first if largest else _smallest_first)


def _figures(values: Sequence[float], places: int = 2) -> list[str]:
    """``values`` written with at least ``places`` decimals, and more where needed.

    Values that differ are written differently: rounding to a common number of decimals
    keeps their order, so a printed comparison (``0.349 <= 0.35``, never ``0.35 <= 0.35``)
    reads the way it came out. Zeros past ``places`` are dropped.
    """
    distinct = len(set(values))
    for decimals in range(places, 18):
        shown = [f"{value:.{decimals}f}" for value in values]
        if len(set(shown)) == distinct:
            break
    else:
        return [repr(value) for value in values]
    if decimals == places:
        return shown
    trimmed = []
    for text in shown:
        whole, _, fraction = text.partition(".")
        fraction = fraction.rstrip("0").ljust(places, "0")
        trimmed.append(f"{whole}.{fraction}" if fraction else whole)
    return trimmed


_Kept = TypeVar("_Kept")


class _Memo(dict[tuple[Target, ...], _Kept]):
    """What a policy works out once per set of candidate targets, kept for the next call.

    It holds a few dozen entries at most. A copy or a pickle of the policy starts empty.
    """

    def remember(self, targets: tuple[Target, ...], value: _Kept) -> _Kept:
        """Keep ``value`` for ``targets`` and return it."""
        if len(self) >= 64:
            self.clear()
        self[targets] = value
        return value

    def __reduce__(self) -> tuple[type[_Memo[_Kept]], tuple[()]]:
        return (type(self), ())


def _request_hash(request: RouteRequest, seed: int) -> int:
    """A 32-bit hash of the request and ``seed``, the same in every process and run.

    A long prompt is sampled (its head, its tail and its length) so hashing stays cheap.
    """
    prompt = request.prompt
    sample = prompt if len(prompt) <= 256 else prompt[:64] + prompt[-192:]
    start = (seed + len(prompt) * 0x9E3779B1 + request.max_tokens) & 0xFFFFFFFF
    value = zlib.crc32(sample.encode("utf-8", "surrogatepass"), start) * 0x9E3779B1 & 0xFFFFFFFF
    return value ^ (value >> 15)
