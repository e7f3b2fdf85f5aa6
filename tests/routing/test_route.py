"""``route()``: the health filter, the request's hints, and the check on a policy's answer."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from hostedai_harpoon._exceptions import ConfigurationError, HostedAIError, NoRouteError
from hostedai_harpoon._resilience import CircuitState
from hostedai_harpoon.routing import (
    DEFAULT_TARGETS,
    CostPolicy,
    RouteDecision,
    RouteRequest,
    Target,
    TargetState,
    Tier,
    route,
)

SMALL, LARGE = DEFAULT_TARGETS
HELLO = RouteRequest("hello")


def first_candidate(request: RouteRequest, candidates: Sequence[TargetState]) -> RouteDecision:
    """A plain-function policy: the first candidate, whatever it is."""
    return RouteDecision(candidates[0].target, "first candidate")


def test_a_plain_function_is_a_policy() -> None:
    decision = route(first_candidate, HELLO, [TargetState(LARGE), TargetState(SMALL)])

    assert decision.target is LARGE
    assert decision.reason == "first candidate"


def test_bare_targets_stand_for_fresh_healthy_states() -> None:
    assert route(first_candidate, HELLO, DEFAULT_TARGETS).target is SMALL


def test_an_unhealthy_target_is_left_out_and_the_reason_says_so() -> None:
    states = [TargetState(SMALL, healthy=False), TargetState(LARGE)]

    decision = route(first_candidate, HELLO, states)

    assert decision.target is LARGE
    assert "gemma-3-270m: unhealthy" in decision.reason


def test_an_open_breaker_leaves_a_target_out() -> None:
    states = [TargetState(SMALL, circuit=CircuitState.OPEN), TargetState(LARGE)]

    decision = route(first_candidate, HELLO, states)

    assert decision.target is LARGE
    assert "circuit breaker open" in decision.reason


def test_a_half_open_breaker_still_routes() -> None:
    states = [TargetState(SMALL, circuit=CircuitState.HALF_OPEN)]

    assert route(first_candidate, HELLO, states).target is SMALL


def test_no_capacity_when_warm_allocations_are_full_and_the_pool_has_no_gpu_left() -> None:
    full = TargetState(SMALL, in_flight=SMALL.max_concurrency, warm_allocations=1, pool_free_gpus=0)

    with pytest.raises(NoRouteError) as caught:
        route(first_candidate, HELLO, [full])

    assert caught.value.reasons["gemma-3-270m"].startswith("no capacity")


def test_a_full_allocation_is_fine_while_the_pool_can_give_another() -> None:
    busy = TargetState(SMALL, in_flight=SMALL.max_concurrency, warm_allocations=1, pool_free_gpus=1)

    assert route(first_candidate, HELLO, [busy]).target is SMALL


def test_room_on_a_warm_allocation_is_enough_when_the_pool_is_full() -> None:
    warm = TargetState(SMALL, in_flight=1, warm_allocations=1, pool_free_gpus=0)

    assert route(first_candidate, HELLO, [warm]).target is SMALL


def test_a_prompt_longer_than_the_context_window_goes_elsewhere() -> None:
    tiny = Target("tiny", tier="small", context_tokens=1_000, max_tokens=500)
    request = RouteRequest("x" * 8_000, max_tokens=100)

    decision = route(first_candidate, request, [tiny, LARGE])

    assert decision.target is LARGE
    assert "context window holds 1000" in decision.reason


def test_max_tokens_above_a_targets_limit_goes_elsewhere() -> None:
    request = RouteRequest("hello", max_tokens=10_000)

    assert route(first_candidate, request, DEFAULT_TARGETS).target is LARGE


def test_no_route_error_says_why_for_each_target() -> None:
    states = [TargetState(SMALL, healthy=False), TargetState(LARGE, circuit=CircuitState.OPEN)]

    with pytest.raises(NoRouteError) as caught:
        route(first_candidate, HELLO, states)

    assert caught.value.reasons == {
        "gemma-3-270m": "unhealthy",
        "qwen3-30b-a3b": "circuit breaker open",
    }
    assert "gemma-3-270m: unhealthy" in str(caught.value)


def test_no_targets_at_all_is_no_route() -> None:
    with pytest.raises(NoRouteError, match="no targets"):
        route(first_candidate, HELLO, [])


def test_a_pinned_target_is_used_without_asking_the_policy() -> None:
    decision = route(CostPolicy(), RouteRequest("hi", target="qwen3-30b-a3b"), DEFAULT_TARGETS)

    assert decision.target is LARGE
    assert "pinned" in decision.reason


def test_a_pin_accepts_a_target_as_well_as_its_name() -> None:
    decision = route(CostPolicy(), RouteRequest("hi", target=LARGE), DEFAULT_TARGETS)

    assert decision.target is LARGE


def test_a_pinned_target_that_cannot_take_the_request_is_no_route() -> None:
    states = [TargetState(SMALL), TargetState(LARGE, healthy=False)]

    with pytest.raises(NoRouteError) as caught:
        route(CostPolicy(), RouteRequest("hi", target="qwen3-30b-a3b"), states)

    assert caught.value.reasons == {"qwen3-30b-a3b": "unhealthy"}


def test_a_pin_to_an_unknown_name_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown target 'gpt-9'.*'gemma-3-270m'"):
        route(CostPolicy(), RouteRequest("hi", target="gpt-9"), DEFAULT_TARGETS)


def test_a_tier_hint_narrows_the_candidates() -> None:
    decision = route(CostPolicy(), RouteRequest("hi", tier="large"), DEFAULT_TARGETS)

    assert decision.target is LARGE
    assert "not in the requested tier (large)" in decision.reason


def test_a_tier_hint_with_no_healthy_target_in_the_tier_is_no_route() -> None:
    states = [TargetState(SMALL), TargetState(LARGE, healthy=False)]

    with pytest.raises(NoRouteError) as caught:
        route(CostPolicy(), RouteRequest("hi", tier=Tier.LARGE), states)

    assert caught.value.reasons["qwen3-30b-a3b"] == "unhealthy"
    assert caught.value.reasons["gemma-3-270m"] == "not in the requested tier (large)"


def test_a_policy_choosing_a_target_that_is_not_a_candidate_is_a_configuration_error() -> None:
    def stubborn(request: RouteRequest, candidates: Sequence[TargetState]) -> RouteDecision:
        return RouteDecision(LARGE, "always large")

    states = [TargetState(SMALL), TargetState(LARGE, circuit=CircuitState.OPEN)]

    with pytest.raises(ConfigurationError, match=r"stubborn chose 'qwen3-30b-a3b'"):
        route(stubborn, HELLO, states)


def test_a_policy_answering_something_else_is_a_configuration_error() -> None:
    def confused(request: RouteRequest, candidates: Sequence[TargetState]) -> RouteDecision:
        return candidates[0].target  # type: ignore[return-value]

    with pytest.raises(ConfigurationError, match="not a RouteDecision"):
        route(confused, HELLO, DEFAULT_TARGETS)


def test_a_policy_listing_its_choice_as_a_fallback_is_a_configuration_error() -> None:
    def repetitive(request: RouteRequest, candidates: Sequence[TargetState]) -> RouteDecision:
        return RouteDecision(SMALL, "twice", fallbacks=(SMALL,))

    with pytest.raises(ConfigurationError, match="fallback"):
        route(repetitive, HELLO, DEFAULT_TARGETS)


def test_a_policy_listing_an_unhealthy_fallback_is_a_configuration_error() -> None:
    def careless(request: RouteRequest, candidates: Sequence[TargetState]) -> RouteDecision:
        return RouteDecision(SMALL, "small", fallbacks=(LARGE,))

    states = [TargetState(SMALL), TargetState(LARGE, healthy=False)]

    with pytest.raises(ConfigurationError, match="'qwen3-30b-a3b' as a fallback"):
        route(careless, HELLO, states)


def test_routing_errors_are_hostedai_errors() -> None:
    assert issubclass(NoRouteError, HostedAIError)
    assert issubclass(ConfigurationError, HostedAIError)


@pytest.mark.parametrize("item", ["gemma-3-270m", None, ["gemma-3-270m"]])
def test_states_of_the_wrong_type_are_a_configuration_error(item: object) -> None:
    with pytest.raises(ConfigurationError, match="must be TargetStates or Targets"):
        route(first_candidate, HELLO, [TargetState(SMALL), item])  # type: ignore[list-item]


def test_a_bare_target_stands_for_the_same_fresh_state_every_time() -> None:
    seen: list[TargetState] = []

    def record(request: RouteRequest, candidates: Sequence[TargetState]) -> RouteDecision:
        seen.extend(candidates)
        return RouteDecision(candidates[0].target, "recorded")

    route(record, HELLO, [SMALL])
    route(record, HELLO, [SMALL])

    assert seen == [TargetState(SMALL), TargetState(SMALL)]
