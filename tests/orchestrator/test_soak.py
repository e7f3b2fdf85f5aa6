"""Soak over TCP: 500 concurrent one-shot calls and 50 concurrent sessions (four calls and
a stream each), with a seeded FaultPlan (errors, drops, latency, 429) and random
cancellations, leave nothing behind.

All the calls start at once as tasks. What bounds the traffic is the orchestrator itself:
``max_allocations=2`` per target and each target's ``max_concurrency`` (32 and 8) let at
most 80 one-shot calls talk to the server at a time, the others waiting in the FIFO queue;
each session runs its calls one after another. One uvicorn thread sharing two cores with
the client answers a few hundred requests a second, so wider would only measure timeouts.
``HARPOON_ORCH_SOAK_CALLS`` and ``HARPOON_ORCH_SOAK_SESSIONS`` make the run bigger.
Both dialects (on gpuaas the faults hit the platform's paths and the pods' servers).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import FaultPlan
from tests.conftest import EmulatorFactory

CALLS = int(os.environ.get("HARPOON_ORCH_SOAK_CALLS", "500"))
SESSIONS = int(os.environ.get("HARPOON_ORCH_SOAK_SESSIONS", "50"))
SEED = 20261129
PROMPTS = [
    "Hi there!",
    "What is the capital of France?",
    "Prove step by step that there are infinitely many primes, and explain why.",
    "Design a cache eviction strategy, compare LRU and LFU and derive their costs.",
]


@pytest.mark.slow
async def test_concurrent_calls_and_sessions_with_faults_and_cancellations_leak_nothing(
    make_emulator: EmulatorFactory, dialect: str
) -> None:
    plan = FaultPlan(
        error_rate=0.04,
        rate_limit_rate=0.03,
        drop_rate=0.03,
        latency_rate=0.05,
        seed=SEED,
        latency=0.05,
        retry_after=0,
    )
    # The platform takes one subscription per team and pool: as many pools as v1 has GPUs.
    pools = {"gpu-pool-1": 4 * SESSIONS}
    if dialect == "gpuaas":
        pools = {str(100 + i): 1 for i in range(4 * SESSIONS)}
    emu = make_emulator(pools=pools, faults=plan, seed=SEED)
    rng = random.Random(SEED)
    outcomes: Counter[str] = Counter()

    def record(outcome: object) -> None:
        if isinstance(outcome, harpoon.RoutedResult | str):  # a string: a streamed answer
            outcomes["result"] += 1
        elif isinstance(outcome, asyncio.CancelledError):
            outcomes["cancelled"] += 1
        elif isinstance(outcome, harpoon.HostedAIError):
            outcomes[type(outcome).__name__] += 1
        else:
            raise AssertionError(f"a call ended with {outcome!r}, not a result or a typed error")

    with emu.serve() as base_url:
        http = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
            timeout=httpx.Timeout(20.0, pool=120.0),
        )
        client = harpoon.AsyncHostedAI(
            base_url,
            "sk-test",
            http_client=http,
            retry=harpoon.RetryPolicy(max_retries=3, initial_backoff=0.01, max_backoff=0.1),
        )
        async with harpoon.Orchestrator(
            client, max_allocations=2, queue_timeout=60.0, idle_release=1.0
        ) as orch:

            async def one_shot(i: int) -> harpoon.RoutedResult:
                return await orch.process(PROMPTS[i % len(PROMPTS)], max_tokens=16)

            async def session(i: int) -> list[object]:
                ended: list[object] = []
                prewarm = ["gemma-3-270m"] if i % 3 == 0 else []
                async with orch.allocate(prewarm=prewarm, budget=1.0) as scope:
                    for j in range(4):
                        try:
                            ended.append(await scope.infer(PROMPTS[(i + j) % 4], max_tokens=16))
                        except harpoon.HostedAIError as exc:
                            ended.append(exc)
                    try:
                        async with scope.stream(PROMPTS[i % 4], max_tokens=8) as chunks:
                            text = "".join([chunk.delta async for chunk in chunks])
                        ended.append(text)
                    except harpoon.HostedAIError as exc:
                        ended.append(exc)
                return ended

            calls = [asyncio.create_task(one_shot(i)) for i in range(CALLS)]
            scopes = [asyncio.create_task(session(i)) for i in range(SESSIONS)]
            victims = rng.sample(calls, CALLS // 10) + rng.sample(scopes, SESSIONS // 10)
            for victim in victims:
                asyncio.get_running_loop().call_later(rng.uniform(0.0, 1.0), victim.cancel)

            for one in await asyncio.gather(*calls, return_exceptions=True):
                record(one)
            for ended in await asyncio.gather(*scopes, return_exceptions=True):
                for each in ended if isinstance(ended, list) else [ended]:
                    record(each)
        await http.aclose()
        assert emu.live_allocations() == []
    assert client.orphans() == []
    assert outcomes["result"] > CALLS // 2, outcomes
    assert outcomes["cancelled"] > 0, outcomes
    assert sum(outcomes.values()) >= CALLS + SESSIONS, outcomes
