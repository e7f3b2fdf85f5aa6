"""End to end, in-process and over TCP: routing, warm reuse and per-allocation concurrency."""

from __future__ import annotations

import asyncio

import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator
from tests.conftest import EmulatorFactory
from tests.dialects import Paths
from tests.orchestrator.conftest import Connect, PeakPerAllocation, live_ids

pytestmark = pytest.mark.timeout(60)

SIMPLE = ["Hi there!", "What is 2 + 2?", "Say hello in French."]
COMPLEX = [
    "Prove step by step that the square root of 2 is irrational, then explain why the "
    "proof fails for 4. Justify each inference rigorously.",
    "Design an algorithm to detect cycles in a directed graph, analyse its complexity, "
    "compare it with two alternatives and derive the worst case.",
]


async def test_a_mixed_batch_routes_both_ways_with_reasons_naming_what_drove_them(
    emulator: Emulator, connect: Connect
) -> None:
    async with harpoon.Orchestrator(connect(emulator)) as orch:
        simple = [await orch.process(prompt, max_tokens=32) for prompt in SIMPLE]
        complex_ = [await orch.process(prompt, max_tokens=32) for prompt in COMPLEX]

    assert {routed.target.name for routed in simple} == {"gemma-3-270m"}
    assert {routed.target.name for routed in complex_} == {"qwen3-30b-a3b"}
    for routed in simple:
        assert "<= threshold" in routed.decision.reason
        assert routed.result.model == "gemma-3-270m"
    for routed in complex_:
        assert "> threshold" in routed.decision.reason
        assert "reasoning" in routed.decision.reason  # the feature that drove it
        assert routed.result.model == "qwen3-30b-a3b"
        assert routed.cost > 0
        assert [attempt.error for attempt in routed.attempts] == [None]
    assert live_ids(emulator) == []


async def test_a_hundred_sequential_calls_to_one_target_lease_one_allocation(
    emulator: Emulator, connect: Connect, paths: Paths
) -> None:
    async with harpoon.Orchestrator(connect(emulator)) as orch:
        results = [
            await orch.process(f"question {i}", target="gemma-3-270m", max_tokens=8)
            for i in range(100)
        ]
        assert len(live_ids(emulator)) == 1
        assert orch.snapshot().targets["gemma-3-270m"].requests == 100

    assert len(emulator.requests_to(*paths.create)) == 1
    assert len({routed.result.allocation_id for routed in results}) == 1
    assert live_ids(emulator) == []


async def test_two_hundred_concurrent_calls_respect_max_concurrency_and_max_allocations(
    make_emulator: EmulatorFactory, connect: Connect, paths: Paths
) -> None:
    emu = make_emulator(latency_scale=0.02)  # inference takes real milliseconds: calls overlap
    peaks: list[PeakPerAllocation] = []

    def count(inner: object) -> PeakPerAllocation:
        peaks.append(PeakPerAllocation(inner, emu))  # type: ignore[arg-type]
        return peaks[-1]

    large = harpoon.Target("qwen3-30b-a3b", tier="large", max_concurrency=8)
    small = harpoon.Target("gemma-3-270m", tier="small")
    async with harpoon.Orchestrator(
        connect(emu, wrap=count), targets=[small, large], max_allocations=3
    ) as orch:
        results = await asyncio.gather(
            *(orch.process(f"task {i}", target=large, max_tokens=4) for i in range(200))
        )

    assert len(results) == 200
    peak = peaks[0].peak
    assert 1 <= len(peak) <= 3  # never more than max_allocations allocations of the target
    assert max(peak.values()) == 8  # calls did pile up, and never more than 8 on one
    assert len(emu.requests_to(*paths.create)) <= 3
    assert live_ids(emu) == []
