"""The routing vocabulary: tiers, targets and their live state, requests, decisions, and
the ``RoutingPolicy`` protocol. ``route()`` (``_route.py``) runs a policy over them.

``Target``, ``TargetState`` and ``RouteRequest`` check their fields when made: a value of
the wrong type or out of range is a ``ConfigurationError`` naming the field.
"""

from __future__ import annotations

import enum
import functools
import math
from collections.abc import Mapping, Sequence
from typing import Any, NoReturn, Protocol

import attrs

from .._checks import MAX_GPUS, check_iterable, check_seconds, check_text
from .._config import Secret
from .._exceptions import ConfigurationError
from .._resilience import CircuitState

__all__ = [
    "InferenceOutcome",
    "RouteDecision",
    "RouteRequest",
    "RoutingPolicy",
    "Target",
    "TargetState",
    "Tier",
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


def _non_empty(instance: object, attribute: attrs.Attribute[Any], value: str) -> None:
    if type(value) is not str and not isinstance(value, str):
        _invalid(instance, attribute, "a non-empty string", value)
    if not value:
        raise ConfigurationError(f"{type(instance).__name__}.{attribute.name} must not be empty")
    if not value.isascii():
        check_text(value, f"{type(instance).__name__}.{attribute.name}")


def _optional_name(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is not None:
        _non_empty(instance, attribute, value)


_INFERENCES = ("hostedai", "openai", "openai-completions")


def _optional_url(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is None:
        return
    _non_empty(instance, attribute, value)
    scheme, _, rest = value.partition("://")
    if scheme.lower() not in ("http", "https") or not rest.strip("/"):
        raise ConfigurationError(
            f"{type(instance).__name__}.{attribute.name} must be an http(s) URL, got {value!r}"
        )


def _to_secret(value: object) -> Secret | None:
    if value is None or isinstance(value, Secret):
        return value
    return Secret.of(value, "Target.api_key")


def _default_inference(target: Target) -> str | None:
    return None if target.endpoint is None else "openai"


def _an_inference(instance: object, attribute: attrs.Attribute[Any], value: str | None) -> None:
    if value is None and getattr(instance, "endpoint", None) is None:
        return  # an allocated target: the client's dialect decides
    if value not in _INFERENCES:
        raise ConfigurationError(
            f"{type(instance).__name__}.{attribute.name} must be one of {_INFERENCES}, "
            f"got {value!r}"
        )
    if value == "hostedai" and getattr(instance, "endpoint", None) is not None:
        raise ConfigurationError(
            "an endpoint target speaks the OpenAI-compatible API: inference must be "
            "'openai' or 'openai-completions'"
        )


def _flag(instance: object, attribute: attrs.Attribute[Any], value: bool) -> None:
    if value is not True and value is not False:
        _invalid(instance, attribute, "True or False", value)


def _at_least_one(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not _is_int(value) or value < 1:
        _invalid(instance, attribute, "a whole number >= 1", value)


def _gpus(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not _is_int(value) or not 1 <= value <= MAX_GPUS:
        _invalid(instance, attribute, f"a whole number from 1 to {MAX_GPUS}", value)


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
    _non_empty(instance, attribute, value)


def _whole(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not _is_int(value):
        _invalid(instance, attribute, "an integer", value)


def _seconds(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    check_seconds(value, f"{type(instance).__name__}.{attribute.name}")


def _optional_callable(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if value is not None and not callable(value):
        _invalid(instance, attribute, "callable or None", value)


def _a_policy(instance: object, attribute: attrs.Attribute[Any], value: object) -> None:
    if not callable(value):
        _invalid(instance, attribute, "a routing policy (a callable)", value)


def target_refs(value: object, name: str) -> tuple[Target | str, ...]:
    """``value`` as a tuple of targets or target names, each checked."""
    refs = tuple(check_iterable(value, name, "targets or target names"))
    for ref in refs:
        if not isinstance(ref, Target) and not (type(ref) is str and ref):
            raise ConfigurationError(
                f"{name} must hold targets or non-empty target names, got {ref!r}"
            )
        if type(ref) is str:
            check_text(ref, name)
    return refs


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

    The names are non-empty strings; ``gpus`` is an integer from 1 to 64 (the API's
    bounds), the other counts integers >= 1, the price a finite number >= 0.

    ``inference`` says how the model is reached: ``"hostedai"`` (the API's
    ``/v1/inference``), ``"openai"`` (the OpenAI-compatible chat API at the allocation's
    endpoint, as vLLM serves it) or ``"openai-completions"`` (its plain completions); for
    an allocated target, ``None`` (the default) leaves it to the client that leases it
    (``"hostedai"`` on ``v1``, ``"openai"`` on ``gpuaas``). An **endpoint target**
    (``endpoint="http://host:8000"``, with ``api_key=`` when the server wants one) is a
    server that already runs, with no GPU allocation behind it: the orchestrator routes to
    it, queues for its ``max_concurrency``, fails over and breaks its circuit as for any
    target, and charges ``cost_per_gpu_hour`` (if given) only for the time calls run on it.
    Its key never shows (in a repr, a log, an error or a snapshot).
    """

    name: str = attrs.field(validator=_non_empty)
    tier: Tier = attrs.field(converter=_to_tier, kw_only=True)
    model: str = attrs.field(
        default=attrs.Factory(_model_from_name, takes_self=True),
        validator=_non_empty,
        kw_only=True,
    )
    pool: str | None = attrs.field(default=None, validator=_optional_name, kw_only=True)
    gpus: int = attrs.field(default=1, validator=_gpus, kw_only=True)
    gpu_type: str | None = attrs.field(default=None, validator=_optional_name, kw_only=True)
    cost_per_gpu_hour: float = attrs.field(default=0.0, validator=_non_negative, kw_only=True)
    max_concurrency: int = attrs.field(default=8, validator=_at_least_one, kw_only=True)
    context_tokens: int = attrs.field(default=8192, validator=_at_least_one, kw_only=True)
    max_tokens: int = attrs.field(default=4096, validator=_at_least_one, kw_only=True)
    endpoint: str | None = attrs.field(default=None, validator=_optional_url, kw_only=True)
    api_key: Secret | None = attrs.field(
        default=None, converter=_to_secret, repr=False, eq=False, kw_only=True
    )
    inference: str | None = attrs.field(
        default=attrs.Factory(_default_inference, takes_self=True),
        validator=_an_inference,
        kw_only=True,
    )
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

    ``prompt`` is a non-empty string and ``max_tokens`` an integer >= 1. ``target`` pins
    the request to one target (a ``Target`` or its name): ``route()`` then uses it without
    consulting the policy, or raises ``NoRouteError`` when it cannot take the request.
    ``tier`` narrows the candidates to one tier and lets the policy choose among them.
    """

    prompt: str
    max_tokens: int = 256
    target: Target | str | None = attrs.field(default=None, kw_only=True)
    tier: Tier | None = attrs.field(default=None, converter=_to_optional_tier, kw_only=True)

    def __attrs_post_init__(self) -> None:
        # The fields' checks in one call, the common case first: one is made per request.
        prompt, max_tokens = self.prompt, self.max_tokens
        if (
            type(prompt) is str
            and prompt
            and prompt.isascii()
            and type(max_tokens) is int
            and max_tokens >= 1
            and self.target is None
        ):
            return
        fields = attrs.fields(RouteRequest)
        _non_empty(self, fields.prompt, prompt)
        _at_least_one(self, fields.max_tokens, max_tokens)
        _a_pin(self, fields.target, self.target)

    @property
    def prompt_tokens(self) -> int:
        """A rough estimate of the prompt's length in tokens (about four characters each)."""
        return len(self.prompt) // 4 + 1


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
