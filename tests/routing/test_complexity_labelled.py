"""ComplexityPolicy routes hand-labelled prompts the way a person would."""

from __future__ import annotations

import pytest

from hostedai_harpoon.routing import DEFAULT_TARGETS, ComplexityPolicy, RouteRequest, Tier, route
from tests.routing.prompts import SHOULD_GO_LARGE, SHOULD_GO_SMALL

LABELLED = [(prompt, Tier.LARGE) for prompt in SHOULD_GO_LARGE] + [
    (prompt, Tier.SMALL) for prompt in SHOULD_GO_SMALL
]


def tier_chosen(prompt: str) -> Tier:
    return route(ComplexityPolicy(), RouteRequest(prompt), DEFAULT_TARGETS).target.tier


def test_the_default_policy_routes_95_percent_of_the_labelled_prompts_as_labelled() -> None:
    wrong = [(prompt, tier) for prompt, tier in LABELLED if tier_chosen(prompt) is not tier]

    accuracy = 1 - len(wrong) / len(LABELLED)
    assert accuracy >= 0.95, wrong


@pytest.mark.parametrize("tier", [Tier.SMALL, Tier.LARGE])
def test_neither_tier_is_sacrificed_for_the_other(tier: Tier) -> None:
    prompts = [prompt for prompt, label in LABELLED if label is tier]

    right = sum(tier_chosen(prompt) is tier for prompt in prompts)

    assert right / len(prompts) >= 0.9


@pytest.mark.parametrize(
    "prompt",
    [
        "Prove that the square root of 2 is irrational, step by step.",
        "Prove that there are infinitely many primes.",
        "Derive the formula for the sum of a geometric series.",
        "Show that there is no largest prime number.",
    ],
)
def test_a_short_proof_request_goes_large_on_its_cue_alone(prompt: str) -> None:
    decision = route(ComplexityPolicy(), RouteRequest(prompt), DEFAULT_TARGETS)

    assert decision.target.tier is Tier.LARGE
    assert "reasoning" in decision.reason


@pytest.mark.parametrize(
    "prompt", ["Why did the chicken cross the road?", "What is a prime number?", "Thanks!"]
)
def test_a_single_weak_cue_does_not_send_small_talk_large(prompt: str) -> None:
    assert tier_chosen(prompt) is Tier.SMALL
