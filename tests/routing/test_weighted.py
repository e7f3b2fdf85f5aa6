"""WeightedPolicy: a reproducible split of traffic in fixed proportions."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import Counter

import pytest

from hostedai_harpoon._exceptions import ConfigurationError
from hostedai_harpoon.routing import (
    DEFAULT_TARGETS,
    RouteRequest,
    TargetState,
    WeightedPolicy,
    route,
)
from tests.routing.prompts import corpus

SMALL, LARGE = DEFAULT_TARGETS
PROMPTS = corpus(4_000, seed=5)


def share_of_small(policy: WeightedPolicy) -> float:
    chosen = Counter(route(policy, RouteRequest(p), DEFAULT_TARGETS).target for p in PROMPTS)
    return chosen[SMALL] / len(PROMPTS)


def test_traffic_splits_in_proportion_to_the_weights() -> None:
    policy = WeightedPolicy({"gemma-3-270m": 3, "qwen3-30b-a3b": 1}, seed=7)

    assert share_of_small(policy) == pytest.approx(0.75, abs=0.03)


def test_no_weights_split_traffic_evenly() -> None:
    assert share_of_small(WeightedPolicy(seed=1)) == pytest.approx(0.5, abs=0.03)


def test_weights_accept_targets_as_well_as_names() -> None:
    by_target = WeightedPolicy({SMALL: 1, LARGE: 4}, seed=2)
    by_name = WeightedPolicy({"gemma-3-270m": 1, "qwen3-30b-a3b": 4}, seed=2)

    assert by_target == by_name


def test_the_same_request_always_gets_the_same_target() -> None:
    policy = WeightedPolicy(seed=7)
    request = RouteRequest("Tell me a joke about GPUs.")

    first = route(policy, request, DEFAULT_TARGETS)

    assert all(route(policy, request, DEFAULT_TARGETS) == first for _ in range(20))
    assert route(WeightedPolicy(seed=7), request, DEFAULT_TARGETS) == first


DRAW_SCRIPT = """
from hostedai_harpoon.routing import DEFAULT_TARGETS, RouteRequest, WeightedPolicy, route
policy = WeightedPolicy(seed=42)
print(",".join(
    route(policy, RouteRequest(f"prompt number {i}"), DEFAULT_TARGETS).target.name
    for i in range(32)
))
"""


def test_the_draw_is_the_same_in_every_process() -> None:
    def draw_in_a_new_process(hash_seed: str) -> str:
        environment = {**os.environ, "PYTHONHASHSEED": hash_seed}
        done = subprocess.run(
            [sys.executable, "-c", DRAW_SCRIPT],
            env=environment,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    here = WeightedPolicy(seed=42)
    expected = ",".join(
        route(here, RouteRequest(f"prompt number {i}"), DEFAULT_TARGETS).target.name
        for i in range(32)
    )

    assert draw_in_a_new_process("1") == draw_in_a_new_process("2") == expected


def test_another_seed_gives_another_assignment() -> None:
    def assignment(seed: int) -> list[str]:
        policy = WeightedPolicy(seed=seed)
        return [route(policy, RouteRequest(p), DEFAULT_TARGETS).target.name for p in PROMPTS]

    assert assignment(1) != assignment(2)


def test_a_left_out_targets_share_goes_to_the_others() -> None:
    states = [TargetState(SMALL, healthy=False), TargetState(LARGE)]
    policy = WeightedPolicy({"gemma-3-270m": 9, "qwen3-30b-a3b": 1})

    decision = route(policy, RouteRequest("hi"), states)

    assert decision.target is LARGE
    assert dict(decision.scores) == {"qwen3-30b-a3b": 1.0}


def test_a_target_missing_from_the_weights_gets_no_traffic() -> None:
    policy = WeightedPolicy({"qwen3-30b-a3b": 1})

    assert share_of_small(policy) == 0.0


def test_when_no_healthy_target_has_a_weight_the_draw_is_uniform() -> None:
    states = [TargetState(SMALL), TargetState(LARGE, healthy=False)]

    decision = route(WeightedPolicy({"qwen3-30b-a3b": 1}), RouteRequest("hi"), states)

    assert decision.target is SMALL
    assert decision.reason.startswith("uniform draw")


def test_a_negative_weight_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="gemma-3-270m"):
        WeightedPolicy({"gemma-3-270m": -1})


def test_a_weight_for_a_name_that_matches_no_target_is_a_configuration_error() -> None:
    policy = WeightedPolicy({"nope": 1})

    with pytest.raises(ConfigurationError, match=r"unknown target.*'nope'") as caught:
        route(policy, RouteRequest("hi"), DEFAULT_TARGETS)

    assert "'gemma-3-270m', 'qwen3-30b-a3b'" in str(caught.value)


def test_an_unknown_name_among_known_ones_is_still_a_configuration_error() -> None:
    policy = WeightedPolicy({"gemma-3-270m": 1, "qwen3-30b-a3b": 1, "gemma-3-27m": 5})

    with pytest.raises(ConfigurationError, match="'gemma-3-27m'"):
        route(policy, RouteRequest("hi"), DEFAULT_TARGETS)


def test_every_unknown_name_is_named() -> None:
    policy = WeightedPolicy({"nope": 1, "gemma-3-270m": 1, "also-nope": 1})

    with pytest.raises(ConfigurationError, match="'also-nope', 'nope'"):
        route(policy, RouteRequest("hi"), DEFAULT_TARGETS)


def test_a_weighted_target_left_out_as_unhealthy_is_not_an_error() -> None:
    policy = WeightedPolicy({"gemma-3-270m": 1, "qwen3-30b-a3b": 1})
    states = [TargetState(SMALL), TargetState(LARGE, healthy=False)]

    for prompt in PROMPTS[:50]:
        assert route(policy, RouteRequest(prompt), states).target is SMALL


def test_a_weighted_target_left_out_by_the_tier_hint_is_not_an_error() -> None:
    policy = WeightedPolicy({"gemma-3-270m": 3, "qwen3-30b-a3b": 1})

    decision = route(policy, RouteRequest("hi", tier="large"), DEFAULT_TARGETS)

    assert decision.target is LARGE


def test_the_same_policy_reports_an_unknown_name_however_often_it_is_called() -> None:
    policy = WeightedPolicy({"nope": 1, "gemma-3-270m": 1})
    states = [TargetState(SMALL), TargetState(LARGE, healthy=False)]

    for _ in range(3):
        with pytest.raises(ConfigurationError, match="'nope'"):
            route(policy, RouteRequest("hi"), states)


def test_called_directly_a_policy_takes_the_states_to_be_every_target() -> None:
    policy = WeightedPolicy({"gemma-3-270m": 1, "qwen3-30b-a3b": 1})

    with pytest.raises(ConfigurationError, match="'qwen3-30b-a3b'"):
        policy(RouteRequest("hi"), [TargetState(SMALL)])


@pytest.mark.parametrize("tiny", [5e-324, 1e-310, 1e-300])
def test_a_lone_tiny_weight_takes_all_the_traffic(tiny: float) -> None:
    # Hypothesis found a denormal weight made the draw land past the last bound.
    policy = WeightedPolicy({"gemma-3-270m": tiny})

    decisions = [route(policy, RouteRequest(p), DEFAULT_TARGETS) for p in PROMPTS[:500]]

    assert {decision.target for decision in decisions} == {SMALL}
    assert dict(decisions[0].scores) == {"gemma-3-270m": 1.0, "qwen3-30b-a3b": 0.0}


def test_a_denormal_weight_beside_a_normal_one_gets_no_traffic() -> None:
    policy = WeightedPolicy({"gemma-3-270m": 5e-324, "qwen3-30b-a3b": 1.0})

    assert share_of_small(policy) == 0.0


def test_weights_whose_sum_overflows_still_split_in_proportion() -> None:
    policy = WeightedPolicy({"gemma-3-270m": 1.5e308, "qwen3-30b-a3b": 1.5e308}, seed=3)

    decision = route(policy, RouteRequest("hi"), DEFAULT_TARGETS)

    assert share_of_small(policy) == pytest.approx(0.5, abs=0.03)
    assert dict(decision.scores) == {"gemma-3-270m": 0.5, "qwen3-30b-a3b": 0.5}
