"""LatencyPolicy: power of two choices on latency times requests in flight."""

from __future__ import annotations

from collections import Counter

from hostedai_harpoon.routing import (
    DEFAULT_TARGETS,
    LatencyPolicy,
    RouteRequest,
    Target,
    TargetState,
    route,
)

SMALL, LARGE = DEFAULT_TARGETS
REQUEST = RouteRequest("What is the weather like?")


def test_the_less_loaded_of_two_wins() -> None:
    states = [
        TargetState(SMALL, latency_ewma=0.1, in_flight=9),
        TargetState(LARGE, latency_ewma=0.4, in_flight=1),
    ]

    decision = route(LatencyPolicy(), REQUEST, states)

    assert decision.target is LARGE
    assert dict(decision.scores) == {"qwen3-30b-a3b": 0.8, "gemma-3-270m": 1.0}
    assert decision.fallbacks == (SMALL,)
    assert "qwen3-30b-a3b is less loaded than gemma-3-270m" in decision.reason


def test_a_recent_error_rate_inflates_the_load() -> None:
    states = [
        TargetState(SMALL, latency_ewma=0.1, error_rate=0.8),
        TargetState(LARGE, latency_ewma=0.3),
    ]

    assert route(LatencyPolicy(), REQUEST, states).target is LARGE


def test_an_unobserved_target_counts_at_the_prior_latency() -> None:
    states = [TargetState(SMALL), TargetState(LARGE, latency_ewma=0.3)]

    assert route(LatencyPolicy(prior_latency=0.2), REQUEST, states).target is SMALL
    assert route(LatencyPolicy(prior_latency=0.5), REQUEST, states).target is LARGE


def test_the_median_stands_in_when_there_is_no_moving_average() -> None:
    states = [TargetState(SMALL, latency_p50=0.9), TargetState(LARGE, latency_p50=0.3)]

    assert route(LatencyPolicy(), REQUEST, states).target is LARGE


def test_a_single_candidate_is_the_choice() -> None:
    decision = route(LatencyPolicy(), REQUEST, [SMALL])

    assert decision.target is SMALL
    assert decision.fallbacks == ()


def test_with_many_candidates_requests_spread_and_each_goes_to_the_better_of_its_two() -> None:
    targets = [Target(f"replica-{i}", tier="small") for i in range(6)]
    states = [TargetState(target, latency_ewma=0.1 * (i + 1)) for i, target in enumerate(targets)]
    policy = LatencyPolicy(seed=3)

    decisions = [route(policy, RouteRequest(f"question {i}"), states) for i in range(600)]

    chosen = Counter(decision.target.name for decision in decisions)
    assert set(chosen) == {f"replica-{i}" for i in range(5)}
    assert chosen["replica-0"] > chosen["replica-2"] > chosen["replica-4"]
    for decision in decisions:
        compared = list(decision.scores)
        assert decision.target.name == compared[0]
        assert decision.scores[compared[0]] <= decision.scores[compared[1]]
        assert len(decision.fallbacks) == 5


def test_the_same_request_over_the_same_states_gets_the_same_decision() -> None:
    targets = [Target(f"replica-{i}", tier="small") for i in range(5)]
    states = [TargetState(target) for target in targets]

    first = route(LatencyPolicy(seed=11), REQUEST, states)
    again = route(LatencyPolicy(seed=11), REQUEST, states)

    assert first == again
