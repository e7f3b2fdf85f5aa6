"""snapshot() counts what happened; health() judges the API and each target."""

from __future__ import annotations

import asyncio
import socket

import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator
from tests.orchestrator.conftest import API_KEY, Connect, live_ids

pytestmark = pytest.mark.timeout(60)

COMPLEX = "Prove step by step why there are infinitely many primes, and explain the proof."


async def test_the_snapshot_counts_requests_tokens_and_gpu_time_per_target(
    emulator: Emulator, connect: Connect
) -> None:
    async with harpoon.Orchestrator(connect(emulator)) as orch:
        results = [await orch.process(p, max_tokens=8) for p in ("Hi!", "Hello!", COMPLEX)]
        snapshot = orch.snapshot()
    small, large = snapshot.targets["gemma-3-270m"], snapshot.targets["qwen3-30b-a3b"]
    assert (small.requests, large.requests) == (2, 1)
    assert small.tokens_out == sum(
        r.result.usage.output_tokens for r in results if r.target.name == "gemma-3-270m"
    )
    assert snapshot.total.tokens_in == sum(r.result.usage.input_tokens for r in results)
    assert (small.warm_allocations, large.warm_allocations) == (1, 1)
    assert small.gpu_seconds > 0
    assert small.cost == pytest.approx(small.gpu_seconds * 0.4 / 3600)
    assert snapshot.total.cost == pytest.approx(small.cost + large.cost)
    assert small.latency_p50 is not None
    assert small.latency_p95 is not None
    assert small.latency_p50 <= small.latency_p95
    assert snapshot.total.errors == snapshot.total.failovers == snapshot.total.in_flight == 0
    assert orch.snapshot().total.warm_allocations == 0  # all released on closing
    assert live_ids(emulator) == []


async def test_health_is_ok_for_a_healthy_api_and_down_when_it_cannot_be_reached(
    emulator: Emulator, connect: Connect
) -> None:
    async with harpoon.Orchestrator(connect(emulator)) as orch:
        report = await orch.health()
    assert report.verdict == "ok"
    assert report.upkeep_error is None
    assert report.api is not None
    assert report.api.status == "ok"
    assert {name: t.verdict for name, t in report.targets.items()} == {
        "gemma-3-270m": "ok",
        "qwen3-30b-a3b": "ok",
    }
    assert report.targets["gemma-3-270m"].pool_free_gpus == 8

    if emulator.dialect == "v1":  # (the platform has no health endpoint to say so)
        emulator.set_health("degraded")
        async with harpoon.Orchestrator(connect(emulator)) as orch:
            assert (await orch.health()).verdict == "degraded"

    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    nowhere = harpoon.AsyncHostedAI(f"http://127.0.0.1:{port}", API_KEY, max_retries=0)
    async with nowhere, harpoon.Orchestrator(nowhere) as orch:
        report = await orch.health()
    assert report.verdict == "down"
    assert report.api is None
    assert report.api_error is not None
    assert "APIConnectionError" in report.api_error


async def test_a_stream_left_early_releases_its_place_and_is_counted(
    emulator: Emulator, connect: Connect
) -> None:
    async with harpoon.Orchestrator(connect(emulator)) as orch, orch.allocate() as session:
        async with session.stream("Hi!", max_tokens=20) as chunks:
            async for chunk in chunks:
                assert chunk.delta
                break
        assert orch.snapshot().total.in_flight == 0
        again = await session.infer("Hi!")  # the same allocation takes the next call
        assert again.result.allocation_id == chunks.attempts[0].allocation_id
        assert orch.snapshot().targets["gemma-3-270m"].requests == 2
    assert live_ids(emulator) == []


async def test_an_upkeep_that_dies_is_logged_and_degrades_health(
    emulator: Emulator, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    called = asyncio.Event()

    def not_async(seconds: float) -> None:  # a sleep that cannot be awaited
        called.set()

    async with harpoon.Orchestrator(connect(emulator), sleep=not_async) as orch:  # type: ignore[arg-type]
        await called.wait()  # the upkeep awaited None and died in that same step
        report = await orch.health()
        routed = await orch.process("Hi!", max_tokens=4)  # calls still work
    assert report.upkeep_error is not None
    assert report.upkeep_error.startswith("TypeError: ")
    assert report.verdict == "degraded"
    assert routed.result.text
    [record] = [r for r in caplog.records if "upkeep stopped" in r.getMessage()]
    assert record.levelname == "ERROR"
    assert record.exc_info is not None
    assert live_ids(emulator) == []
