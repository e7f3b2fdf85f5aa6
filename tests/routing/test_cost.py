"""CostPolicy: the cheapest healthy target that can take the request."""

from __future__ import annotations

from hostedai_harpoon._resilience import CircuitState
from hostedai_harpoon.routing import (
    DEFAULT_TARGETS,
    CostPolicy,
    RouteRequest,
    Target,
    TargetState,
    route,
)

SMALL, LARGE = DEFAULT_TARGETS
REQUEST = RouteRequest("Summarise this paragraph.")


def test_the_cheapest_healthy_target_wins() -> None:
    decision = route(CostPolicy(), REQUEST, [LARGE, SMALL])

    assert decision.target is SMALL
    assert decision.reason == "cheapest healthy target: gemma-3-270m at $0.40/hour"


def test_when_the_cheapest_is_down_the_next_cheapest_wins() -> None:
    states = [TargetState(SMALL, circuit=CircuitState.OPEN), TargetState(LARGE)]

    assert route(CostPolicy(), REQUEST, states).target is LARGE


def test_cost_counts_every_gpu_of_a_target() -> None:
    two_cheap_gpus = Target("pair", tier="large", gpus=2, cost_per_gpu_hour=1.5)
    one_dear_gpu = Target("single", tier="large", gpus=1, cost_per_gpu_hour=2.5)

    assert route(CostPolicy(), REQUEST, [two_cheap_gpus, one_dear_gpu]).target is one_dear_gpu


def test_scores_hold_each_candidates_hourly_cost() -> None:
    decision = route(CostPolicy(), REQUEST, DEFAULT_TARGETS)

    assert dict(decision.scores) == {"gemma-3-270m": 0.40, "qwen3-30b-a3b": 2.50}


def test_the_fallbacks_are_the_others_cheapest_first() -> None:
    middle = Target("middle", tier="medium", cost_per_gpu_hour=1.0)

    decision = route(CostPolicy(), REQUEST, [LARGE, middle, SMALL])

    assert decision.fallbacks == (middle, LARGE)


def test_equal_costs_prefer_a_closed_breaker_then_warm_then_idle() -> None:
    a, b, c = (Target(name, tier="small", cost_per_gpu_hour=1.0) for name in "abc")
    half_open = TargetState(a, circuit=CircuitState.HALF_OPEN, warm_allocations=1)
    cold = TargetState(b)
    warm_busy = TargetState(c, warm_allocations=1, in_flight=3)

    decision = route(CostPolicy(), REQUEST, [half_open, cold, warm_busy])

    assert decision.target is c
    assert decision.fallbacks == (b, a)


def test_equal_costs_follow_the_live_state_from_one_call_to_the_next() -> None:
    a, b = (Target(name, tier="small", cost_per_gpu_hour=1.0) for name in "ab")
    policy = CostPolicy()

    first = route(policy, REQUEST, [TargetState(a, in_flight=5), TargetState(b)])
    second = route(policy, REQUEST, [TargetState(a), TargetState(b, in_flight=5)])

    assert (first.target, second.target) == (b, a)
