"""Properties every policy keeps, whatever the targets, their state and the request."""

from __future__ import annotations

import copy
import random
from collections.abc import Sequence
from functools import cache

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from hostedai_harpoon._exceptions import ConfigurationError, NoRouteError
from hostedai_harpoon._resilience import CircuitState
from hostedai_harpoon.routing import (
    CascadePolicy,
    ComplexityPolicy,
    CostPolicy,
    FallbackPolicy,
    LatencyPolicy,
    RouteDecision,
    RouteRequest,
    RoutingPolicy,
    Target,
    TargetState,
    WeightedPolicy,
    route,
)
from tests.routing.prompts import corpus

NAMES = [f"target-{i}" for i in range(6)]


def can_take(state: TargetState, request: RouteRequest) -> bool:
    """The rule of when a target can take a request, written out as the docs state it."""
    target = state.target
    room_on_a_warm_allocation = state.in_flight < state.warm_allocations * target.max_concurrency
    pool_can_give_another = state.pool_free_gpus is None or state.pool_free_gpus >= target.gpus
    return (
        state.healthy
        and state.circuit is not CircuitState.OPEN
        and (room_on_a_warm_allocation or pool_can_give_another)
        and request.max_tokens <= target.max_tokens
        and len(request.prompt) // 4 + 1 + request.max_tokens <= target.context_tokens
    )


@st.composite
def targets(draw: st.DrawFn, name: str) -> Target:
    context = draw(st.integers(2_048, 40_000) | st.integers(64, 2_048))
    return Target(
        name,
        tier=draw(st.sampled_from(["small", "medium", "large"])),
        gpus=draw(st.sampled_from([1, 1, 1, 2, 8])),
        cost_per_gpu_hour=draw(st.sampled_from([0.0, 0.4, 1.0, 2.5, 4.0])),
        max_concurrency=draw(st.integers(1, 64)),
        context_tokens=context,
        max_tokens=draw(st.integers(min(context, 1_024), context) | st.integers(1, context)),
    )


@st.composite
def states(draw: st.DrawFn) -> list[TargetState]:
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=len(NAMES)))
    latency = st.none() | st.floats(0.001, 30.0)
    return [
        TargetState(
            draw(targets(name)),
            healthy=draw(st.sampled_from([True, True, True, False])),
            circuit=draw(st.sampled_from([*CircuitState, CircuitState.CLOSED])),
            in_flight=draw(st.integers(0, 100)),
            warm_allocations=draw(st.integers(0, 3)),
            latency_ewma=draw(latency),
            latency_p50=draw(latency),
            error_rate=draw(st.floats(0.0, 1.0)),
            pool_free_gpus=draw(st.none() | st.integers(0, 8)),
        )
        for name in names
    ]


requests = st.builds(
    RouteRequest,
    prompt=st.text(min_size=1, max_size=400) | st.sampled_from(corpus(200, seed=3)),
    max_tokens=st.integers(1, 1_024) | st.integers(1, 20_000),
)


def first_candidate(request: RouteRequest, candidates: Sequence[TargetState]) -> RouteDecision:
    """A plain-function policy."""
    return RouteDecision(candidates[-1].target, "last candidate")


def policies() -> st.SearchStrategy[RoutingPolicy]:
    plain: st.SearchStrategy[RoutingPolicy] = st.sampled_from(
        [ComplexityPolicy(), CostPolicy(), CascadePolicy(), first_candidate]
    )
    seeded: st.SearchStrategy[RoutingPolicy] = st.one_of(
        st.builds(ComplexityPolicy, threshold=st.floats(0.0, 1.0)),
        st.builds(LatencyPolicy, seed=st.integers(0, 2**40), prior_latency=st.floats(0.0, 5.0)),
        st.builds(
            WeightedPolicy,
            weights=st.none() | st.dictionaries(st.sampled_from(NAMES), st.floats(0.0, 10.0)),
            seed=st.integers(0, 2**40),
        ),
    )
    return st.recursive(
        plain | seeded,
        lambda inner: st.builds(
            FallbackPolicy, inner, st.lists(st.sampled_from(NAMES), max_size=3)
        ),
        max_leaves=3,
    )


def names_are_known(policy: RoutingPolicy, known: set[str]) -> bool:
    """Whether every name a (nested) policy holds, fallbacks and weights, names a target."""
    if isinstance(policy, FallbackPolicy):
        named = {ref if isinstance(ref, str) else ref.name for ref in policy.fallbacks}
        return named <= known and names_are_known(policy.policy, known)
    if isinstance(policy, WeightedPolicy) and policy.weights is not None:
        return set(policy.weights) <= known
    return True


@settings(max_examples=300, deadline=None)
@given(policy=policies(), request=requests, states=states())
def test_a_decision_is_a_healthy_candidate_and_no_route_exactly_when_there_is_none(
    policy: RoutingPolicy, request: RouteRequest, states: list[TargetState]
) -> None:
    healthy = [state.target for state in states if can_take(state, request)]
    if healthy and not names_are_known(policy, {state.target.name for state in states}):
        event("a fallback or a weight names an unknown target")
        with pytest.raises(ConfigurationError, match="unknown target"):
            route(policy, request, states)
        return

    if not healthy:
        event("no route")
        with pytest.raises(NoRouteError) as caught:
            route(policy, request, states)
        assert set(caught.value.reasons) == {state.target.name for state in states}
        return

    decision = route(policy, request, states)

    event(f"routed among {min(len(healthy), 3)}+ healthy targets")
    assert decision.target in healthy
    assert all(fallback in healthy for fallback in decision.fallbacks)
    assert decision.target not in decision.fallbacks
    assert len(set(decision.fallbacks)) == len(decision.fallbacks)
    assert decision.reason


@settings(max_examples=200, deadline=None)
@given(policy=policies(), request=requests, states=states())
def test_the_same_inputs_give_the_same_decision(
    policy: RoutingPolicy, request: RouteRequest, states: list[TargetState]
) -> None:
    if not names_are_known(policy, {state.target.name for state in states}):
        return
    twin = copy.deepcopy(policy)

    def outcome(policy: RoutingPolicy) -> RouteDecision | dict[str, str]:
        try:
            return route(policy, request, states)
        except NoRouteError as error:
            return error.reasons

    first = outcome(policy)

    assert outcome(policy) == first
    assert outcome(twin) == first


@settings(max_examples=200, deadline=None)
@given(prompt=st.text(min_size=1, max_size=3_000), max_tokens=st.integers(1, 100_000))
def test_the_complexity_score_is_between_zero_and_one(prompt: str, max_tokens: int) -> None:
    score = ComplexityPolicy().score(RouteRequest(prompt, max_tokens))

    assert 0.0 <= score <= 1.0


@cache
def calibration_corpus() -> tuple[list[str], list[float]]:
    """40,000 varied prompts and their scores (scores do not depend on the threshold)."""
    prompts = corpus(40_000, seed=2026)
    policy = ComplexityPolicy()
    return prompts, [policy.score(prompt) for prompt in prompts]


@settings(max_examples=12, deadline=None, derandomize=True)
@given(large_share=st.floats(0.05, 0.95), split_seed=st.integers(0, 2**32 - 1))
def test_calibration_hits_the_requested_large_share_on_a_held_out_half(
    large_share: float, split_seed: int
) -> None:
    prompts, scores = calibration_corpus()
    order = list(range(len(prompts)))
    random.Random(split_seed).shuffle(order)
    half = len(order) // 2
    calibrating, held_out = order[:half], order[half:]

    policy = ComplexityPolicy().calibrate([prompts[i] for i in calibrating], large_share)

    share = sum(scores[i] > policy.threshold for i in held_out) / len(held_out)
    assert share == pytest.approx(large_share, abs=0.02)


def test_the_calibration_corpus_has_few_ties() -> None:
    _, scores = calibration_corpus()
    counts: dict[float, int] = {}
    for score in scores:
        counts[score] = counts.get(score, 0) + 1

    assert len(counts) > len(scores) / 4
    assert max(counts.values()) < 0.01 * len(scores)
