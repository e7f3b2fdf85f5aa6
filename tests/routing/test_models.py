"""The routing value classes: Tier, Target, TargetState, RouteRequest, DEFAULT_TARGETS, and
how decisions and policies copy."""

from __future__ import annotations

import copy
import pickle
from typing import Any

import attrs
import pytest

from hostedai_harpoon._exceptions import ConfigurationError, HostedAIError
from hostedai_harpoon._resilience import CircuitState
from hostedai_harpoon.routing import (
    DEFAULT_TARGETS,
    CascadePolicy,
    ComplexityPolicy,
    CostPolicy,
    FallbackPolicy,
    LatencyPolicy,
    RouteRequest,
    RoutingPolicy,
    Target,
    TargetState,
    Tier,
    WeightedPolicy,
    route,
)


def test_tiers_are_ordered_small_medium_large() -> None:
    assert Tier.SMALL < Tier.MEDIUM < Tier.LARGE
    assert sorted([Tier.LARGE, Tier.SMALL, Tier.MEDIUM]) == [Tier.SMALL, Tier.MEDIUM, Tier.LARGE]
    assert Tier.LARGE >= Tier.LARGE > Tier.SMALL


def test_a_tier_is_accepted_by_its_value() -> None:
    assert Target("m", tier="medium").tier is Tier.MEDIUM
    assert Tier("large") is Tier.LARGE


def test_an_unknown_tier_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown tier 'huge'"):
        Target("m", tier="huge")


def test_default_targets_are_named_after_their_models() -> None:
    small, large = DEFAULT_TARGETS

    assert (small.name, small.model, small.tier) == ("gemma-3-270m", "gemma-3-270m", Tier.SMALL)
    assert (large.name, large.model, large.tier) == ("qwen3-30b-a3b", "qwen3-30b-a3b", Tier.LARGE)
    assert small.cost_per_hour < large.cost_per_hour


def test_a_targets_model_defaults_to_its_name() -> None:
    assert Target("llama-3-8b", tier="medium").model == "llama-3-8b"
    assert Target("fast", tier="small", model="gemma-3-270m").model == "gemma-3-270m"


def test_hourly_cost_is_gpus_times_the_gpu_hour_price() -> None:
    assert Target("big", tier="large", gpus=4, cost_per_gpu_hour=2.5).cost_per_hour == 10.0


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("cost_per_gpu_hour", -1.0),
        ("cost_per_gpu_hour", float("nan")),
        ("gpus", 0),
        ("max_concurrency", 0),
        ("context_tokens", 0),
        ("max_tokens", 0),
    ],
)
def test_a_target_rejects_impossible_values(field: str, value: float) -> None:
    changes: dict[str, Any] = {field: value}
    with pytest.raises(ConfigurationError, match=field):
        Target("m", tier="small", **changes)


def test_a_target_needs_a_name() -> None:
    with pytest.raises(ConfigurationError, match="name"):
        Target("", tier="small")


def test_targets_are_frozen_values() -> None:
    target = Target("m", tier="small")

    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        target.name = "other"  # type: ignore[misc]
    assert target == Target("m", tier="small")
    assert hash(target) == hash(Target("m", tier="small"))


@pytest.mark.parametrize(
    ("field", "value"),
    [("in_flight", -1), ("error_rate", 1.5), ("latency_ewma", -0.1), ("pool_free_gpus", -2)],
)
def test_a_target_state_rejects_impossible_values(field: str, value: float) -> None:
    changes: dict[str, Any] = {field: value}
    with pytest.raises(ConfigurationError, match=field):
        TargetState(DEFAULT_TARGETS[0], **changes)


def test_the_latency_estimate_prefers_the_moving_average_then_the_median() -> None:
    small = DEFAULT_TARGETS[0]

    assert TargetState(small, latency_ewma=0.2, latency_p50=0.3).latency == 0.2
    assert TargetState(small, latency_p50=0.3).latency == 0.3
    assert TargetState(small).latency is None


def test_a_request_asks_for_at_least_one_token() -> None:
    with pytest.raises(ConfigurationError, match="max_tokens"):
        RouteRequest("hi", max_tokens=0)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("name", None),
        ("name", 7),
        ("model", b"gemma"),
        ("pool", 3),
        ("pool", ""),
        ("gpu_type", ["h100"]),
        ("gpus", "2"),
        ("gpus", 1.5),
        ("gpus", True),
        ("cost_per_gpu_hour", "0.4"),
        ("cost_per_gpu_hour", None),
        ("max_concurrency", None),
        ("context_tokens", "8k"),
        ("max_tokens", 10.0),
    ],
)
def test_a_target_of_the_wrong_type_is_a_configuration_error(field: str, value: object) -> None:
    fields: dict[str, Any] = {"name": "m", "tier": "small", field: value}

    with pytest.raises(ConfigurationError, match=rf"^Target\.{field} must "):
        Target(**fields)


@pytest.mark.parametrize("tier", [None, 3, ["small"], {"small": 1}])
def test_a_tier_of_the_wrong_type_is_a_configuration_error(tier: object) -> None:
    with pytest.raises(ConfigurationError, match="unknown tier"):
        Target("m", tier=tier)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("target", "gemma-3-270m"),
        ("target", None),
        ("healthy", None),
        ("healthy", "yes"),
        ("circuit", "open"),
        ("in_flight", "3"),
        ("in_flight", 1.5),
        ("warm_allocations", None),
        ("latency_ewma", "0.2"),
        ("latency_p95", float("inf")),
        ("error_rate", None),
        ("error_rate", float("nan")),
        ("pool_free_gpus", "4"),
    ],
)
def test_a_target_state_of_the_wrong_type_is_a_configuration_error(
    field: str, value: object
) -> None:
    fields: dict[str, Any] = {"target": DEFAULT_TARGETS[0], field: value}

    with pytest.raises(ConfigurationError, match=rf"^TargetState\.{field} must be .*, got "):
        TargetState(**fields)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"prompt": None}, "RouteRequest.prompt must be a non-empty string, got None"),
        ({"prompt": b"hi"}, "RouteRequest.prompt must be a non-empty string, got b'hi'"),
        ({"prompt": ""}, "RouteRequest.prompt must not be empty"),
        ({"prompt": "hi", "max_tokens": "64"}, "RouteRequest.max_tokens must be a whole number"),
        ({"prompt": "hi", "max_tokens": None}, "RouteRequest.max_tokens must be a whole number"),
        ({"prompt": "hi", "target": 3}, "RouteRequest.target must be a Target, a target's name"),
        ({"prompt": "hi", "target": ""}, "RouteRequest.target must not be empty"),
        ({"prompt": "hi", "tier": 2}, "unknown tier 2"),
    ],
)
def test_a_request_of_the_wrong_type_is_a_configuration_error(
    fields: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError) as caught:
        RouteRequest(**fields)

    assert str(caught.value).startswith(message)
    assert isinstance(caught.value, HostedAIError)


def test_well_typed_values_are_accepted_as_given() -> None:
    target = Target("m", tier="small", pool="p", gpu_type="h100", gpus=2, cost_per_gpu_hour=1)
    state = TargetState(
        target, healthy=False, circuit=CircuitState.HALF_OPEN, latency_ewma=1, error_rate=1
    )

    assert (target.cost_per_hour, state.latency, state.error_rate) == (2, 1, 1)
    assert RouteRequest("hi", target=target).target is target
    assert RouteRequest("hi", target="m").target == "m"


def test_a_request_estimates_its_prompt_tokens_at_four_characters_each() -> None:
    assert RouteRequest("x" * 400).prompt_tokens == 101


def test_policies_and_decisions_survive_copying_and_pickling() -> None:
    policies: list[RoutingPolicy] = [
        ComplexityPolicy(),
        CostPolicy(),
        LatencyPolicy(seed=1),
        WeightedPolicy({"gemma-3-270m": 2}, seed=1),
        CascadePolicy(order=["gemma-3-270m"]),
        FallbackPolicy(CostPolicy(), ["qwen3-30b-a3b"]),
    ]
    request = RouteRequest("hello")
    for policy in policies:
        decision = route(policy, request, DEFAULT_TARGETS)

        assert pickle.loads(pickle.dumps(decision)) == decision
        assert copy.deepcopy(decision) == decision
        assert route(pickle.loads(pickle.dumps(policy)), request, DEFAULT_TARGETS) == decision
        assert route(copy.deepcopy(policy), request, DEFAULT_TARGETS) == decision


def test_no_route_error_is_importable_from_the_routing_package() -> None:
    from hostedai_harpoon import routing
    from hostedai_harpoon._exceptions import NoRouteError

    assert routing.NoRouteError is NoRouteError
    assert "NoRouteError" in routing.__all__
