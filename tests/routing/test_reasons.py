"""Reasons never read as a contradiction: the numbers they print agree with what they claim."""

from __future__ import annotations

import math
import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from hostedai_harpoon.routing import (
    DEFAULT_TARGETS,
    ComplexityPolicy,
    CostPolicy,
    LatencyPolicy,
    RouteRequest,
    Target,
    TargetState,
    WeightedPolicy,
    route,
)
from tests.routing.prompts import corpus

COMPARISON = re.compile(r"^complexity (\S+) (<=|>) threshold (\S+) \(")
PROMPTS = corpus(100, seed=16)


def printed_comparison(reason: str) -> tuple[float, str, float, str, str]:
    """The score, operator and threshold as the reason prints them, and their texts."""
    match = COMPARISON.match(reason)
    assert match is not None, reason
    score, operator, threshold = match.groups()
    return float(score), operator, float(threshold), score, threshold


def complexity_reason(prompt: str, threshold: float) -> tuple[float, str]:
    decision = route(ComplexityPolicy(threshold), RouteRequest(prompt), DEFAULT_TARGETS)
    return decision.scores["complexity"], decision.reason


@given(
    prompt=st.sampled_from(PROMPTS) | st.text(min_size=1, max_size=300),
    offset=st.sampled_from([0.0, 1e-12, 1e-9, 1e-6, 0.0004, 0.0013, 0.0049]) | st.floats(0.0, 0.01),
    below=st.booleans(),
)
@example(prompt=PROMPTS[0], offset=0.0013, below=True)
@example(prompt=PROMPTS[0], offset=0.0013, below=False)
def test_a_score_near_the_threshold_prints_as_it_compared(
    prompt: str, offset: float, below: bool
) -> None:
    score = ComplexityPolicy().score(prompt)
    threshold = min(1.0, max(0.0, score - offset if below else score + offset))

    actual_score, reason = complexity_reason(prompt, threshold)
    shown_score, operator, shown_threshold, score_text, threshold_text = printed_comparison(reason)

    assert operator == (">" if actual_score > threshold else "<=")
    if operator == ">":
        assert shown_score > shown_threshold, reason
    else:
        assert shown_score <= shown_threshold, reason
    if actual_score != threshold:
        assert score_text != threshold_text, reason


@pytest.mark.parametrize(
    ("offset", "expected"),
    [(0.0013, "<="), (-0.0013, ">"), (0.0, "<=")],
    ids=["a hair below", "a hair above", "exactly at"],
)
def test_a_score_a_hair_from_the_threshold_shows_the_digits_that_tell_them_apart(
    offset: float, expected: str
) -> None:
    prompt = "Summarise this paragraph about the quarterly budget review for the team."
    score = ComplexityPolicy().score(prompt)

    _, reason = complexity_reason(prompt, score + offset)
    _, operator, _, score_text, threshold_text = printed_comparison(reason)

    assert operator == expected
    assert (score_text == threshold_text) is (offset == 0.0), reason


def test_the_comparison_reads_as_two_decimals_when_that_is_enough() -> None:
    _, reason = complexity_reason("Hi there!", 0.35)

    assert re.match(r"complexity 0\.\d\d <= threshold 0\.35 \(", reason), reason


@pytest.mark.parametrize(
    ("price", "shown"),
    [(0.40, "$0.40/hour"), (0.004, "$0.004/hour"), (0.0001, "$0.0001/hour"), (0.0, "$0.00/hour")],
)
def test_the_cheapest_price_never_reads_as_free_unless_it_is(price: float, shown: str) -> None:
    cheap = Target("cheap", tier="small", cost_per_gpu_hour=price)
    dear = Target("dear", tier="large", cost_per_gpu_hour=1.0)

    decision = route(CostPolicy(), RouteRequest("hi"), [cheap, dear])

    assert decision.reason == f"cheapest healthy target: cheap at {shown}"


def share_in(reason: str) -> float:
    match = re.search(r", ([\d.]+)% of the draw", reason)
    assert match is not None, reason
    return float(match.group(1)) / 100


def test_a_weighted_share_reads_0_or_100_percent_only_when_it_is() -> None:
    policy = WeightedPolicy({"gemma-3-270m": 1, "qwen3-30b-a3b": 249})
    decisions = [route(policy, RouteRequest(prompt), DEFAULT_TARGETS) for prompt in PROMPTS * 5]
    decisions += [
        route(policy, RouteRequest(f"request {i}"), DEFAULT_TARGETS) for i in range(2_000)
    ]
    shown = {decision.target.name: share_in(decision.reason) for decision in decisions}

    assert shown == {
        "gemma-3-270m": pytest.approx(0.004),
        "qwen3-30b-a3b": pytest.approx(0.996),
    }
    for decision in decisions:
        assert share_in(decision.reason) == pytest.approx(
            decision.scores[decision.target.name], abs=5e-4
        )


def test_an_even_split_still_reads_in_whole_percents() -> None:
    decision = route(WeightedPolicy(), RouteRequest("hi"), DEFAULT_TARGETS)

    assert decision.reason.endswith(", 50% of the draw")


def test_equally_loaded_targets_are_not_called_less_loaded() -> None:
    small, large = DEFAULT_TARGETS
    states = [TargetState(small, latency_ewma=0.5), TargetState(large, latency_ewma=0.5)]

    decision = route(LatencyPolicy(), RouteRequest("hi"), states)

    assert math.isclose(decision.scores[small.name], decision.scores[large.name])
    assert "less loaded" not in decision.reason
    assert "gemma-3-270m and qwen3-30b-a3b are equally loaded" in decision.reason
    assert "gemma-3-270m comes first by name" in decision.reason
