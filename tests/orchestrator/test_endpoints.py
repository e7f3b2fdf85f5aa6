"""Endpoint targets: servers that already run (vLLM and friends), routed, queued, failed over,
priced and kept secret exactly as allocated targets are; alone or mixed with them."""

from __future__ import annotations

import asyncio
import pickle
import random
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.orchestrator import _endpoints
from hostedai_harpoon.testing import AsyncEmulatorTransport, Emulator, FaultPlan
from tests.conftest import EmulatorFactory
from tests.orchestrator.conftest import live_ids

pytestmark = pytest.mark.timeout(120)

ENDPOINT_KEY = "sk-endpoint-secret-0123456789"
COMPLEX = "Prove rigorously, step by step, why sqrt(2) is irrational; then justify each step."


def small(url: str, **options: Any) -> harpoon.Target:
    return harpoon.Target(
        "local-vllm",
        tier="small",
        model="gemma-3-270m",
        endpoint=url,
        api_key=ENDPOINT_KEY,
        **options,
    )


LARGE = harpoon.Target("qwen3-30b-a3b", tier="large", inference="openai")


@pytest.fixture
def served(make_emulator: EmulatorFactory) -> Iterator[tuple[Emulator, str, str]]:
    """An emulator over TCP: its control plane and a standalone OpenAI-compatible server
    (which takes only ``ENDPOINT_KEY``, and the control plane's key)."""
    emu = make_emulator(api_keys=[ENDPOINT_KEY, "sk-control-plane"])
    with emu.serve() as base_url, emu.serve_openai() as openai_url:
        yield emu, base_url, openai_url


def test_an_endpoint_target_keeps_its_key_out_of_every_repr() -> None:
    target = small("http://127.0.0.1:8000")
    assert ENDPOINT_KEY not in repr(target)
    assert ENDPOINT_KEY not in str(target)
    assert target.inference == "openai"
    with pytest.raises(TypeError):
        pickle.dumps(target)
    with pytest.raises(harpoon.ConfigurationError, match="endpoint"):
        harpoon.Target("x", tier="small", endpoint="ftp://host")
    with pytest.raises(harpoon.ConfigurationError, match="inference"):
        harpoon.Target("x", tier="small", endpoint="http://h:1", inference="hostedai")


async def test_an_orchestrator_of_endpoint_targets_needs_no_client(
    served: tuple[Emulator, str, str],
) -> None:
    emu, _, url = served
    other = harpoon.Target(
        "other-vllm", tier="large", model="qwen3-30b-a3b", endpoint=url, api_key=ENDPOINT_KEY
    )
    async with harpoon.Orchestrator(targets=[small(url), other]) as orchestrator:
        routed = await orchestrator.process("Hi")
        assert routed.target.name == "local-vllm"
        assert routed.result.text
        assert routed.result.usage.output_tokens > 0
        async with orchestrator.stream("Hi there") as chunks:
            text = "".join([chunk.delta async for chunk in chunks])
        assert text
        health = await orchestrator.health()
        assert health.verdict == "ok"
        snapshot = orchestrator.snapshot()
        assert snapshot.targets["local-vllm"].requests == 2
        for shown in (repr(orchestrator), repr(snapshot), repr(health)):
            assert ENDPOINT_KEY not in shown
        with pytest.raises(harpoon.UsageError, match="endpoint"):
            _ = orchestrator.client
    paths = {exchange.path for exchange in emu.exchanges}
    assert paths == {"/v1/chat/completions"}  # nothing allocated, no pools read


async def test_a_mixed_orchestrator_routes_small_to_the_server_and_large_to_an_allocation(
    served: tuple[Emulator, str, str],
) -> None:
    emu, base_url, url = served
    async with (
        harpoon.AsyncHostedAI(base_url=base_url, api_key="sk-control-plane") as client,
        harpoon.Orchestrator(client, targets=[small(url), LARGE]) as orchestrator,
    ):
        quick = await orchestrator.process("Hi")
        hard = await orchestrator.process(COMPLEX)
        assert quick.target.name == "local-vllm"
        assert hard.target.name == "qwen3-30b-a3b"
        (allocation,) = emu.live_allocations()
        assert hard.result.allocation_id == allocation.id
        # the allocated target speaks the OpenAI protocol at its allocation's endpoint
        assert emu.requests_to("POST", "/v1/inference") == []
    assert live_ids(emu) == []


async def test_a_dead_endpoint_fails_over_to_the_allocated_target_and_its_breaker_opens(
    make_emulator: EmulatorFactory,
) -> None:
    emu = make_emulator()
    with emu.serve() as base_url:
        dead = small("http://127.0.0.1:9")  # nothing listens there
        async with (
            harpoon.AsyncHostedAI(base_url=base_url, api_key="k", max_retries=0) as client,
            harpoon.Orchestrator(client, targets=[dead, LARGE]) as orchestrator,
        ):
            for _ in range(6):
                routed = await orchestrator.process("Hi", tier=None)
                assert routed.target.name == "qwen3-30b-a3b"
            health = (await orchestrator.health()).targets["local-vllm"]
            assert health.circuit is harpoon.CircuitState.OPEN
            assert health.verdict == "down"
        assert live_ids(emu) == []


async def test_calls_beyond_an_endpoints_max_concurrency_queue_for_it(
    make_emulator: EmulatorFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    emu = make_emulator(latency_scale=0.2)
    now = [0]
    peak = [0]

    class Counting(httpx.AsyncBaseTransport):
        inner = AsyncEmulatorTransport(emu.openai_server())

        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            now[0] += 1
            peak[0] = max(peak[0], now[0])
            try:
                response = await self.inner.handle_async_request(request)
                await response.aread()
                return response
            finally:
                now[0] -= 1

    made = harpoon.AsyncEndpoint

    def counted(url: str, **options: Any) -> harpoon.AsyncEndpoint:
        return made(url, http_client=httpx.AsyncClient(transport=Counting()), **options)

    monkeypatch.setattr(_endpoints, "AsyncEndpoint", counted)
    two_at_a_time = small("http://127.0.0.1:8000", max_concurrency=2)
    async with harpoon.Orchestrator(targets=[two_at_a_time]) as orchestrator:
        routed = await asyncio.gather(*(orchestrator.process("Hi") for _ in range(12)))
    assert len(routed) == 12
    assert peak[0] == 2  # the server never had more than its max_concurrency at once


async def test_an_endpoints_price_is_charged_for_the_time_calls_run_on_it(
    served: tuple[Emulator, str, str],
) -> None:
    _, _, url = served
    priced = small(url, cost_per_gpu_hour=3.6)  # a thousandth of a dollar a second
    async with harpoon.Orchestrator(targets=[priced]) as orchestrator:
        async with orchestrator.allocate(budget=1.0) as session:
            routed = await asyncio.gather(*(session.infer(f"Hi {i}") for i in range(10)))
            await asyncio.sleep(0.2)  # idle: an endpoint costs nothing then
        assert session.idle_cost == 0.0
        assert session.spent > 0.0
        assert sum(r.cost for r in routed) == pytest.approx(session.spent, rel=0.01)
        assert orchestrator.snapshot().targets["local-vllm"].cost >= session.spent * (1 - 1e-9)


@pytest.mark.slow
async def test_a_faulty_mixed_soak_with_cancellations_leaves_no_allocation(
    make_emulator: EmulatorFactory,
) -> None:
    emu = make_emulator(faults=FaultPlan(error_rate=0.05, drop_rate=0.02, seed=17))
    rng = random.Random(17)
    outcomes: list[str] = []
    with emu.serve() as base_url, emu.serve_openai() as url:
        retry = harpoon.RetryPolicy(max_retries=2, initial_backoff=0.001, max_backoff=0.01)
        async with (
            harpoon.AsyncHostedAI(base_url=base_url, api_key="k", retry=retry) as client,
            harpoon.Orchestrator(client, targets=[small(url), LARGE]) as orchestrator,
        ):

            async def one(i: int) -> None:
                prompt = COMPLEX if i % 3 == 0 else f"Hi {i}"
                task = asyncio.create_task(orchestrator.process(prompt))
                if rng.random() < 0.1:
                    await asyncio.sleep(rng.random() * 0.01)
                    task.cancel()
                try:
                    await task
                    outcomes.append("ok")
                except asyncio.CancelledError:
                    outcomes.append("cancelled")
                except harpoon.HostedAIError as exc:
                    outcomes.append(type(exc).__name__)

            for start in range(0, 600, 100):
                await asyncio.gather(*(one(i) for i in range(start, start + 100)))
    assert len(outcomes) == 600
    assert outcomes.count("ok") > 400, outcomes
    assert live_ids(emu) == []
