"""ComplexityPolicy: small prompts go small, complex ones go large, and it says why."""

from __future__ import annotations

import attrs
import pytest

from hostedai_harpoon._exceptions import ConfigurationError
from hostedai_harpoon._resilience import CircuitState
from hostedai_harpoon.routing import (
    DEFAULT_TARGETS,
    ComplexityPolicy,
    RouteRequest,
    Target,
    TargetState,
    route,
)

SMALL, LARGE = DEFAULT_TARGETS
PROOF = (
    "Prove step by step that the sum of the first n odd numbers is n^2. First, state the "
    "claim formally and check the base case. Then derive the inductive step and justify "
    "each equation. Finally, explain why the argument does not depend on n being even, and "
    "compare it with a direct geometric proof.\n"
    + "Work through every intermediate equation carefully and show all the algebra. "
    * 12
)


def test_a_greeting_routes_to_the_small_model() -> None:
    decision = route(ComplexityPolicy(), RouteRequest("Hi there! How are you?"), DEFAULT_TARGETS)

    assert decision.target is SMALL
    assert decision.reason.startswith("complexity 0.")
    assert "small tier, gemma-3-270m" in decision.reason


def test_a_long_multi_step_proof_request_routes_to_the_large_model() -> None:
    decision = route(ComplexityPolicy(), RouteRequest(PROOF, max_tokens=2048), DEFAULT_TARGETS)

    assert decision.target is LARGE
    assert "large tier, qwen3-30b-a3b" in decision.reason


def test_an_open_breaker_on_the_large_target_falls_back_to_small_and_says_so() -> None:
    states = [TargetState(SMALL), TargetState(LARGE, circuit=CircuitState.OPEN)]

    decision = route(ComplexityPolicy(), RouteRequest(PROOF, max_tokens=2048), states)

    assert decision.target is SMALL
    assert "wants the large tier but no large-tier target is healthy" in decision.reason
    assert "falling back to gemma-3-270m" in decision.reason
    assert "qwen3-30b-a3b: circuit breaker open" in decision.reason


def test_the_reason_names_the_two_features_that_drove_the_score_most() -> None:
    decision = route(ComplexityPolicy(), RouteRequest(PROOF), DEFAULT_TARGETS)

    features = ["length", "reasoning", "steps", "code", "math", "questions", "output"]
    assert sorted(features, key=decision.scores.__getitem__)[-2:] == ["math", "reasoning"]
    assert "(reasoning: derive, formally, justify, prove; math: algebra, equation)" in (
        decision.reason
    )


def test_the_reason_names_the_cue_words_of_a_driving_feature() -> None:
    prompt = "Write a Python function that parses a CSV file; then add a unit test."

    decision = route(ComplexityPolicy(), RouteRequest(prompt), DEFAULT_TARGETS)

    assert "code: function, python" in decision.reason


def test_scores_hold_the_complexity_the_threshold_and_each_feature() -> None:
    decision = ComplexityPolicy(threshold=0.4)(RouteRequest(PROOF), [TargetState(SMALL)])

    features = ["length", "reasoning", "steps", "code", "math", "questions", "output"]
    assert set(decision.scores) == {"complexity", "threshold", *features}
    assert decision.scores["threshold"] == 0.4
    assert decision.scores["complexity"] == pytest.approx(
        sum(decision.scores[name] for name in features)
    )


@pytest.mark.parametrize(
    ("plain", "richer"),
    [
        ("Tell me about cats.", "Tell me about cats. Why do they purr? Why do they knead?"),
        ("Tell me about rivers.", "Write a detailed, comprehensive essay about rivers."),
        ("Look at this.", "Look at this:\n```\nfor (i = 0; i < n; i++) { a[i] = b[i]; }\n```"),
        ("What about x?", "Solve the equation x^2 + 3x = 10 and compute the integral."),
        ("Make a list.", "Make a list:\n1. first\n2. then\n3. next\n4. finally"),
        ("Short.", "Short, but a much longer prompt " + "with many more words " * 20),
    ],
)
def test_each_feature_raises_the_score(plain: str, richer: str) -> None:
    policy = ComplexityPolicy()

    assert policy.score(richer) > policy.score(plain)


def test_asking_for_more_tokens_raises_the_score() -> None:
    policy = ComplexityPolicy()

    assert policy.score(RouteRequest("Tell me a story.", max_tokens=4096)) > policy.score(
        RouteRequest("Tell me a story.", max_tokens=256)
    )


def test_a_bare_prompt_scores_like_a_request_for_256_tokens() -> None:
    policy = ComplexityPolicy()

    assert policy.score("Explain why.") == policy.score(RouteRequest("Explain why.", 256))


def test_cue_words_at_the_end_of_a_long_document_count() -> None:
    document = "The quarterly numbers were flat across every region. " * 60
    policy = ComplexityPolicy()

    assert policy.score(document + "Now explain why, and compare the regions.") > policy.score(
        document + "Thanks."
    )


def test_with_three_tiers_a_complex_prompt_goes_to_the_largest_available() -> None:
    medium = Target("llama-3-8b", tier="medium", cost_per_gpu_hour=1.0)
    states = [TargetState(SMALL), TargetState(medium), TargetState(LARGE, healthy=False)]

    decision = route(ComplexityPolicy(), RouteRequest(PROOF), states)

    assert decision.target is medium
    assert decision.fallbacks == (SMALL,)
    assert "falling back to llama-3-8b (medium tier)" in decision.reason


def test_the_fallbacks_are_the_other_candidates_nearest_tier_first() -> None:
    decision = route(ComplexityPolicy(), RouteRequest("hello"), DEFAULT_TARGETS)

    assert decision.fallbacks == (LARGE,)


def test_among_targets_of_a_tier_a_warm_one_is_preferred() -> None:
    cold = Target("small-a", tier="small")
    warm = Target("small-b", tier="small")
    states = [TargetState(cold), TargetState(warm, warm_allocations=1)]

    assert route(ComplexityPolicy(), RouteRequest("hi"), states).target is warm


def test_calibrate_returns_a_new_policy_and_leaves_the_original_alone() -> None:
    policy = ComplexityPolicy()

    calibrated = policy.calibrate(["hi", "hello", "prove it", PROOF], large_share=0.25)

    assert policy.threshold == 0.35
    assert calibrated is not policy
    assert calibrated.score(PROOF) > calibrated.threshold > calibrated.score("prove it")


def test_calibrating_to_no_large_share_keeps_everything_small() -> None:
    prompts = ["hi", PROOF, "what is 2 + 2?"]

    calibrated = ComplexityPolicy().calibrate(prompts, large_share=0.0)

    assert all(calibrated.score(prompt) <= calibrated.threshold for prompt in prompts)


def test_calibrating_to_an_all_large_share_sends_everything_large() -> None:
    prompts = ["hi", PROOF, "what is 2 + 2?"]

    calibrated = ComplexityPolicy().calibrate(prompts, large_share=1.0)

    assert all(calibrated.score(prompt) > calibrated.threshold for prompt in prompts)


def test_calibrate_accepts_requests_as_well_as_prompts() -> None:
    requests = [RouteRequest("hi", max_tokens=4096), RouteRequest("hi", max_tokens=16)]

    calibrated = ComplexityPolicy().calibrate(requests, large_share=0.5)

    assert calibrated.score(requests[0]) > calibrated.threshold > calibrated.score(requests[1])


@pytest.mark.parametrize("share", [-0.1, 1.5])
def test_calibrate_rejects_a_share_outside_zero_to_one(share: float) -> None:
    with pytest.raises(ConfigurationError, match="large_share"):
        ComplexityPolicy().calibrate(["hi"], large_share=share)


def test_calibrate_needs_prompts() -> None:
    with pytest.raises(ConfigurationError, match="at least one prompt"):
        ComplexityPolicy().calibrate([])


def test_a_threshold_outside_zero_to_one_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="threshold"):
        ComplexityPolicy(threshold=1.2)


def test_an_empty_prompt_is_a_configuration_error_not_a_route() -> None:
    with pytest.raises(ConfigurationError, match="prompt must not be empty"):
        RouteRequest("")
    with pytest.raises(ConfigurationError, match="request must not be empty"):
        ComplexityPolicy().score("")


def test_a_tier_hint_that_overrides_the_wanted_tier_is_named_in_the_reason() -> None:
    decision = route(ComplexityPolicy(), RouteRequest("hi", tier="large"), DEFAULT_TARGETS)

    assert decision.target is LARGE
    assert "wants the small tier but the request's tier hint narrowed the candidates" in (
        decision.reason
    )
    assert "no small-tier target is healthy" not in decision.reason


def test_a_tier_hint_down_to_the_small_tier_is_named_in_the_reason() -> None:
    request = RouteRequest(PROOF, max_tokens=2048, tier="small")

    decision = route(ComplexityPolicy(), request, DEFAULT_TARGETS)

    assert decision.target is SMALL
    assert (
        "wants the large tier but the request's tier hint narrowed the candidates to the "
        "small tier; gemma-3-270m"
    ) in decision.reason


def test_a_tier_hint_matching_the_wanted_tier_reads_as_usual() -> None:
    decision = route(ComplexityPolicy(), RouteRequest("hi", tier="small"), DEFAULT_TARGETS)

    assert "small tier, gemma-3-270m" in decision.reason
    assert "tier hint" not in decision.reason


def test_piling_up_cue_words_saturates_each_feature_without_spilling_into_another() -> None:
    output_cues = (
        "detailed comprehensive essay thorough report elaborate exhaustive extensive article"
    )
    policy = ComplexityPolicy()

    piled = policy(RouteRequest(f"Write a {output_cues} chapter."), [TargetState(SMALL)])
    one = policy(RouteRequest("Write a detailed chapter."), [TargetState(SMALL)])

    assert one.scores["output"] < piled.scores["output"] <= 0.10
    for feature in ["reasoning", "steps", "code", "math"]:
        assert piled.scores[feature] == one.scores[feature] == 0.0
    assert piled.reason.count("output: ") == 1


@pytest.mark.parametrize("threshold", ["0.5", None, True, 1.5, float("nan")])
def test_a_threshold_that_is_not_a_fraction_is_a_configuration_error(threshold: object) -> None:
    with pytest.raises(ConfigurationError, match=r"ComplexityPolicy\.threshold must be"):
        ComplexityPolicy(threshold)  # type: ignore[arg-type]


def test_a_recalibrated_policy_shows_its_own_threshold_in_reasons() -> None:
    policy = attrs.evolve(ComplexityPolicy(), threshold=0.9)

    decision = route(policy, RouteRequest("Prove that 2 is prime."), DEFAULT_TARGETS)

    assert "threshold 0.90" in decision.reason
