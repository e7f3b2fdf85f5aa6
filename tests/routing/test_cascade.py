"""CascadePolicy: start at the smallest tier, escalate when the answer falls short."""

from __future__ import annotations

import attrs
import pytest

from hostedai_harpoon._exceptions import ConfigurationError, NoRouteError
from hostedai_harpoon._resilience import CircuitState
from hostedai_harpoon.routing import (
    DEFAULT_TARGETS,
    CascadePolicy,
    InferenceOutcome,
    RouteDecision,
    RouteRequest,
    Target,
    TargetState,
    route,
)

SMALL, LARGE = DEFAULT_TARGETS
MEDIUM = Target("llama-3-8b", tier="medium", cost_per_gpu_hour=1.0)
THREE_TIERS = [LARGE, SMALL, MEDIUM]
REQUEST = RouteRequest("Summarise the meeting notes.")


@attrs.frozen
class Answer:
    """What an inference returned, as far as the cascade cares."""

    text: str
    finish_reason: str = "stop"


GOOD = Answer("The meeting agreed to ship on Friday.")
CUT_OFF = Answer("The meeting agreed to", finish_reason="length")


def test_the_cascade_starts_at_the_smallest_tier() -> None:
    decision = route(CascadePolicy(), REQUEST, THREE_TIERS)

    assert decision.target is SMALL
    assert decision.fallbacks == (MEDIUM, LARGE)
    assert "bottom rung: gemma-3-270m (small tier)" in decision.reason


def test_a_good_answer_is_kept() -> None:
    cascade = CascadePolicy()
    decision = route(cascade, REQUEST, THREE_TIERS)

    assert not cascade.should_escalate(GOOD)
    assert cascade.escalate(REQUEST, decision, GOOD, THREE_TIERS) is None


def test_a_cut_off_answer_escalates_to_the_next_tier() -> None:
    cascade = CascadePolicy()
    decision = route(cascade, REQUEST, THREE_TIERS)

    step = cascade.escalate(REQUEST, decision, CUT_OFF, THREE_TIERS)

    assert step is not None
    assert step.target is MEDIUM
    assert step.fallbacks == (LARGE,)
    assert step.reason == (
        "escalated from gemma-3-270m: the answer was cut off (finish_reason 'length'); "
        "next rung llama-3-8b (medium tier)"
    )


def test_escalation_climbs_one_tier_at_a_time_up_to_the_top() -> None:
    cascade = CascadePolicy()
    decision = route(cascade, REQUEST, THREE_TIERS)
    visited = [decision.target]

    while (step := cascade.escalate(REQUEST, decision, CUT_OFF, THREE_TIERS)) is not None:
        decision = step
        visited.append(decision.target)

    assert visited == [SMALL, MEDIUM, LARGE]


@pytest.mark.parametrize("text", ["", "   \n"])
def test_an_empty_answer_escalates(text: str) -> None:
    cascade = CascadePolicy()

    assert cascade.escalation_reason(Answer(text)) == "the answer was empty"
    step = cascade.escalate(REQUEST, SMALL, Answer(text), DEFAULT_TARGETS)
    assert step is not None
    assert step.target is LARGE


def test_the_accept_predicate_can_reject_an_answer() -> None:
    def mentions_a_day(answer: InferenceOutcome) -> bool:
        return "day" in answer.text

    cascade = CascadePolicy(accept=mentions_a_day)

    assert not cascade.should_escalate(GOOD)
    assert cascade.should_escalate(Answer("The meeting agreed to ship."))
    assert cascade.escalation_reason(Answer("no")) == "the accept check rejected the answer"


def test_an_unhealthy_next_tier_is_skipped() -> None:
    states = [TargetState(SMALL), TargetState(MEDIUM, healthy=False), TargetState(LARGE)]

    step = CascadePolicy().escalate(REQUEST, SMALL, CUT_OFF, states)

    assert step is not None
    assert step.target is LARGE
    assert "llama-3-8b: unhealthy" in step.reason


def test_escalation_reads_the_live_state_even_if_the_previous_target_is_now_down() -> None:
    states = [TargetState(SMALL, circuit=CircuitState.OPEN), TargetState(LARGE)]

    step = CascadePolicy().escalate(REQUEST, "gemma-3-270m", CUT_OFF, states)

    assert step is not None
    assert step.target is LARGE


def test_there_is_nothing_above_the_largest_tier() -> None:
    assert CascadePolicy().escalate(REQUEST, LARGE, CUT_OFF, DEFAULT_TARGETS) is None


def test_there_is_nothing_to_escalate_to_when_every_target_is_down() -> None:
    states = [TargetState(SMALL), TargetState(LARGE, healthy=False)]

    assert CascadePolicy().escalate(REQUEST, SMALL, CUT_OFF, states) is None


def test_a_pinned_request_is_never_escalated() -> None:
    pinned = RouteRequest("Summarise.", target="gemma-3-270m")

    assert CascadePolicy().escalate(pinned, SMALL, CUT_OFF, DEFAULT_TARGETS) is None


def test_several_targets_in_a_tier_are_alternatives_not_rungs() -> None:
    other_small = Target("smollm-360m", tier="small", cost_per_gpu_hour=0.3)
    targets = [SMALL, other_small, LARGE]
    cascade = CascadePolicy()

    decision = route(cascade, REQUEST, targets)
    step = cascade.escalate(REQUEST, decision, CUT_OFF, targets)

    assert decision.target is other_small
    assert decision.fallbacks == (SMALL, LARGE)
    assert step is not None
    assert step.target is LARGE


def test_an_explicit_order_is_the_ladder() -> None:
    cascade = CascadePolicy(order=["llama-3-8b", LARGE])

    decision = route(cascade, REQUEST, THREE_TIERS)
    step = cascade.escalate(REQUEST, decision, CUT_OFF, THREE_TIERS)

    assert decision.target is MEDIUM
    assert decision.fallbacks == (LARGE,)
    assert step is not None
    assert step.target is LARGE
    assert cascade.escalate(REQUEST, step, CUT_OFF, THREE_TIERS) is None


def test_an_explicit_order_skips_a_rung_that_is_down() -> None:
    states = [TargetState(SMALL, healthy=False), TargetState(MEDIUM), TargetState(LARGE)]

    decision = route(CascadePolicy(order=["gemma-3-270m", "qwen3-30b-a3b"]), REQUEST, states)

    assert decision.target is LARGE


def test_an_explicit_order_with_every_rung_down_is_no_route() -> None:
    states = [TargetState(SMALL), TargetState(LARGE, healthy=False)]

    with pytest.raises(NoRouteError) as caught:
        route(CascadePolicy(order=["qwen3-30b-a3b"]), REQUEST, states)

    assert caught.value.reasons == {"qwen3-30b-a3b": "unhealthy"}


def test_an_unknown_name_in_the_order_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown target 'qwen3-32b'"):
        route(CascadePolicy(order=["gemma-3-270m", "qwen3-32b"]), REQUEST, DEFAULT_TARGETS)


def test_an_unknown_previous_target_name_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="unknown target 'gemma-2'"):
        CascadePolicy().escalate(REQUEST, "gemma-2", CUT_OFF, DEFAULT_TARGETS)


def test_the_orchestrator_loop_from_the_docs_runs_to_the_first_good_answer() -> None:
    answers = {"gemma-3-270m": CUT_OFF, "llama-3-8b": Answer(""), "qwen3-30b-a3b": GOOD}
    cascade = CascadePolicy()

    decision: RouteDecision = route(cascade, REQUEST, THREE_TIERS)
    result = answers[decision.target.name]
    while (step := cascade.escalate(REQUEST, decision, result, THREE_TIERS)) is not None:
        decision = step
        result = answers[decision.target.name]

    assert (decision.target, result) == (LARGE, GOOD)
