"""How long a routing decision takes, against one raw in-process httpx call.

Run ``python bench/routing.py`` (about ten seconds). The baseline is one ``httpx.Client``
POST with a JSON body over ``httpx.MockTransport``, whose handler decodes the body and
answers JSON that the client decodes again: the cheapest real HTTP round trip there is. It
carries the same 2,000-character prompt every built-in policy then decides on, over the two
default targets.

The "decision" column times the policy call itself, on the candidates ``route()`` hands it;
the "route()" column adds the health filter and the answer check around it, as the
Orchestrator pays it. Policies that keep what depends only on the set of candidates are
measured warm, as they run in steady state. FallbackPolicy's own cost is measured around a
policy that returns a ready-made decision. Times are CPU time of this process, the rounds
of every measurement are interleaved, and each figure is the median over rounds, so a busy
neighbour on the machine skews the ratios little. Targets, on the decision: ComplexityPolicy
at most 0.05 of the baseline, every other built-in at most 0.01. Exit status 1 when a
target is missed.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import timeit
from collections.abc import Callable, Sequence
from functools import partial

import httpx

from hostedai_harpoon._benchmarks import record
from hostedai_harpoon.routing import (
    DEFAULT_TARGETS,
    CascadePolicy,
    ComplexityPolicy,
    CostPolicy,
    FallbackPolicy,
    LatencyPolicy,
    RouteDecision,
    RouteRequest,
    RoutingPolicy,
    TargetState,
    WeightedPolicy,
    route,
)

ROUNDS = 25
BASELINE = "one raw in-process httpx call, POST JSON and parse JSON (CPU time)"
HTTP_CALLS_PER_ROUND = 40
DECISIONS_PER_ROUND = 2_000

PROMPT_HEAD = (
    "Read the incident report below. First, explain step by step what caused the outage, "
    "then compare the two remediation plans the team proposed and justify which one you "
    "would ship. Finally, list the open questions for the post-mortem.\n\n"
)
REPORT = (
    "At 09:14 UTC the allocation service began returning 503 capacity_exhausted for pool "
    "gpu-pool-1 although the dashboard showed four free GPUs. The scheduler had marked two "
    "nodes as draining after a kernel update, but the capacity cache was refreshed only "
    "every ten minutes, so admission control kept counting them. Retries from three "
    "clients without jitter amplified the load, and the circuit breakers of the inference "
    "gateway opened at 09:16. Plan A shortens the cache refresh to thirty seconds and adds "
    "jitter to client retries. Plan B moves admission control into the scheduler so that "
    "capacity is read from a single source of truth. "
)
PROMPT = (PROMPT_HEAD + REPORT * 8)[:2_000]


def _handler(request: httpx.Request) -> httpx.Response:
    body = json.loads(request.content)
    return httpx.Response(
        200,
        json={
            "id": "inf_000000000000000000000001",
            "allocation_id": body["allocation_id"],
            "model": "gemma-3-270m",
            "text": "Hello!",
            "finish_reason": "stop",
            "usage": {"input_tokens": 4, "output_tokens": 2},
            "latency_ms": 12,
        },
        headers={"x-request-id": "req_000000000000000000000001"},
    )


def _http_call(client: httpx.Client) -> Callable[[], object]:
    def call() -> object:
        response = client.post(
            "/v1/inference",
            json={"allocation_id": "alloc_1", "prompt": PROMPT, "max_tokens": 512},
        )
        return response.json()

    return call


def _states() -> list[TargetState]:
    small, large = DEFAULT_TARGETS
    return [
        TargetState(small, in_flight=3, warm_allocations=1, latency_ewma=0.08, latency_p50=0.07),
        TargetState(large, in_flight=1, warm_allocations=1, latency_ewma=0.9, latency_p50=0.85),
    ]


_CONSTANT = RouteDecision(DEFAULT_TARGETS[0], "constant")


def _constant_policy(request: RouteRequest, candidates: Sequence[TargetState]) -> RouteDecision:
    """Always the same, ready-made decision: what is left is FallbackPolicy's own cost."""
    return _CONSTANT


# (label, policy, target ratio or None for a row shown for information only)
POLICIES: Sequence[tuple[str, RoutingPolicy, float | None]] = (
    ("ComplexityPolicy", ComplexityPolicy(), 0.05),
    ("CostPolicy", CostPolicy(), 0.01),
    ("LatencyPolicy", LatencyPolicy(seed=7), 0.01),
    ("WeightedPolicy", WeightedPolicy({"gemma-3-270m": 3, "qwen3-30b-a3b": 1}, seed=7), 0.01),
    ("CascadePolicy", CascadePolicy(), 0.01),
    ("FallbackPolicy (own cost)", FallbackPolicy(_constant_policy, ["qwen3-30b-a3b"]), 0.01),
    ("FallbackPolicy(Complexity)", FallbackPolicy(ComplexityPolicy(), ["gemma-3-270m"]), None),
)


def _candidates(request: RouteRequest, states: Sequence[TargetState]) -> Sequence[TargetState]:
    """The candidates ``route()`` hands a policy for this request."""
    handed: list[Sequence[TargetState]] = []

    def record(request: RouteRequest, candidates: Sequence[TargetState]) -> RouteDecision:
        handed.append(candidates)
        return RouteDecision(candidates[0].target, "recorded")

    route(record, request, states)
    return handed[0]


def _median_per_call(samples: list[float], calls: int) -> float:
    return statistics.median(samples) / calls


def main() -> int:
    """Measure, print the table, and return 1 when a policy misses its target."""
    request = RouteRequest(PROMPT, max_tokens=512)
    states = _states()
    candidates = _candidates(request, states)
    client = httpx.Client(transport=httpx.MockTransport(_handler), base_url="http://bench")
    http = _http_call(client)

    jobs: dict[str, tuple[Callable[[], object], int]] = {"http": (http, HTTP_CALLS_PER_ROUND)}
    for name, policy, _ in POLICIES:
        jobs[f"{name}/decision"] = (partial(policy, request, candidates), DECISIONS_PER_ROUND)
        jobs[f"{name}/route"] = (partial(route, policy, request, states), DECISIONS_PER_ROUND)
    samples: dict[str, list[float]] = {key: [] for key in jobs}
    for function, number in jobs.values():
        timeit.Timer(function).timeit(number=number)
    for _ in range(ROUNDS):
        for key, (function, number) in jobs.items():
            samples[key].append(timeit.Timer(function, timer=time.process_time).timeit(number))
    client.close()

    baseline = _median_per_call(samples["http"], HTTP_CALLS_PER_ROUND)
    print(
        f"python {sys.version.split()[0]}, httpx {httpx.__version__}, prompt {len(PROMPT):,} chars"
    )
    print(
        f"baseline: one raw in-process httpx call (POST JSON, parse JSON): {baseline * 1e6:.1f} µs"
        " of CPU time"
    )
    print()
    header = (
        f"{'policy':<28} {'decision':>10} {'ratio':>7} {'target':>8}   {'route()':>9} {'ratio':>7}"
    )
    print(header)
    print("-" * len(header))
    failed = False
    for name, _, target in POLICIES:
        decision = _median_per_call(samples[f"{name}/decision"], DECISIONS_PER_ROUND)
        routed = _median_per_call(samples[f"{name}/route"], DECISIONS_PER_ROUND)
        ratio = decision / baseline
        if target is None:
            goal, verdict = "", "    "
        else:
            goal, verdict = f"<={target}", "PASS" if ratio <= target else "FAIL"
        failed = failed or verdict == "FAIL"
        record(
            f"{name}: decision",
            ratio,
            baseline=BASELINE,
            target=None if target is None else f"<= {target}",
            passed=None if target is None else verdict == "PASS",
        )
        record(f"{name}: route()", routed / baseline, baseline=BASELINE)
        print(
            f"{name:<28} {decision * 1e6:>8.2f}µs {ratio:>7.4f} {goal:>8} "
            f"{verdict}  {routed * 1e6:>7.2f}µs {routed / baseline:>7.4f}"
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
