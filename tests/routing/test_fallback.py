"""FallbackPolicy: any policy, with an ordered list of targets to fall back on."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from hostedai_harpoon._exceptions import ConfigurationError, NoRouteError
from hostedai_harpoon._resilience import CircuitState
from hostedai_harpoon.routing import (
    DEFAULT_TARGETS,
    ComplexityPolicy,
    CostPolicy,
    FallbackPolicy,
    RouteDecision,
    RouteRequest,
    Target,
    TargetState,
    route,
)

SMALL, LARGE = DEFAULT_TARGETS
MEDIUM = Target("llama-3-8b", tier="medium", cost_per_gpu_hour=1.0)
TARGETS = [SMALL, MEDIUM, LARGE]


def refuse(request: RouteRequest, candidates: Sequence[TargetState]) -> RouteDecision:
    """A policy that never finds a route."""
    raise NoRouteError("nothing suits", reasons={"everything": "not suitable"})


def test_the_wrapped_policy_decides_and_the_fallbacks_go_first_in_line() -> None:
    policy = FallbackPolicy(CostPolicy(), fallbacks=["qwen3-30b-a3b"])

    decision = route(policy, RouteRequest("hi"), TARGETS)

    assert decision.target is SMALL
    assert decision.fallbacks == (LARGE, MEDIUM)
    assert decision.reason.startswith("cheapest healthy target")


def test_fallbacks_accept_targets_as_well_as_names() -> None:
    by_target = FallbackPolicy(CostPolicy(), fallbacks=[LARGE])

    assert route(by_target, RouteRequest("hi"), TARGETS).fallbacks == (LARGE, MEDIUM)


def test_unhealthy_fallbacks_are_skipped() -> None:
    states = [TargetState(SMALL), TargetState(MEDIUM), TargetState(LARGE, healthy=False)]
    policy = FallbackPolicy(CostPolicy(), fallbacks=["qwen3-30b-a3b", "llama-3-8b"])

    assert route(policy, RouteRequest("hi"), states).fallbacks == (MEDIUM,)


def test_the_chosen_target_is_not_its_own_fallback() -> None:
    policy = FallbackPolicy(CostPolicy(), fallbacks=["gemma-3-270m", "qwen3-30b-a3b"])

    assert route(policy, RouteRequest("hi"), TARGETS).fallbacks == (LARGE, MEDIUM)


def test_when_the_wrapped_policy_finds_no_route_the_first_healthy_fallback_is_used() -> None:
    states = [TargetState(SMALL), TargetState(MEDIUM, healthy=False), TargetState(LARGE)]
    policy = FallbackPolicy(refuse, fallbacks=["llama-3-8b", "qwen3-30b-a3b", "gemma-3-270m"])

    decision = route(policy, RouteRequest("hi"), states)

    assert decision.target is LARGE
    assert decision.fallbacks == (SMALL,)
    assert "found no route (nothing suits)" in decision.reason
    assert "first healthy fallback: qwen3-30b-a3b" in decision.reason


def test_with_no_healthy_fallback_the_wrapped_policys_no_route_error_stands() -> None:
    states = [TargetState(SMALL), TargetState(LARGE, healthy=False)]

    with pytest.raises(NoRouteError, match="nothing suits"):
        route(FallbackPolicy(refuse, fallbacks=["qwen3-30b-a3b"]), RouteRequest("hi"), states)


def test_an_unknown_fallback_name_is_a_configuration_error() -> None:
    policy = FallbackPolicy(CostPolicy(), fallbacks=["gemma-3-27b"])

    with pytest.raises(ConfigurationError, match="unknown target 'gemma-3-27b'"):
        route(policy, RouteRequest("hi"), TARGETS)


def test_a_fallback_around_a_complexity_policy_keeps_its_decision_and_reason() -> None:
    states = [TargetState(SMALL), TargetState(MEDIUM), TargetState(LARGE)]
    inner = ComplexityPolicy()
    policy = FallbackPolicy(inner, fallbacks=["llama-3-8b"])
    request = RouteRequest("Prove step by step that sqrt(2) is irrational, and explain why.")

    decision = route(policy, request, states)
    plain = route(inner, request, states)

    assert decision.target is plain.target is LARGE
    assert decision.reason == plain.reason
    assert decision.fallbacks == (MEDIUM, SMALL)


def test_fallback_policies_nest() -> None:
    states: list[TargetState | Target] = [
        TargetState(SMALL, circuit=CircuitState.OPEN),
        TargetState(MEDIUM),
        LARGE,
    ]
    policy = FallbackPolicy(FallbackPolicy(refuse, fallbacks=["gemma-3-270m"]), ["llama-3-8b"])

    decision = route(policy, RouteRequest("hi"), states)

    assert decision.target is MEDIUM
