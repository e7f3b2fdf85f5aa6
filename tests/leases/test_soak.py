"""Soak: thousands of concurrent lease cycles over TCP, with faults and cancellations.

All the cycles start at once as tasks; at most ``IN_FLIGHT`` of them talk to the server at a
time, because one uvicorn thread sharing two cores with the client answers about 200
requests a second, and thousands of simultaneous calls would only measure timeouts. Each
cancelled task is cancelled at a random moment after its cycle began, so cancellations land
in the create, the readiness wait, the block and the release.

``HARPOON_SOAK_CYCLES`` and ``HARPOON_SOAK_IN_FLIGHT`` make the run longer or wider.

Bounded by its count of cycles, never by wall time: on a loaded machine it takes longer and
still passes (it is marked slow, so its per-test limit, ``SLOW_TIMEOUT`` in
tests/conftest.py, only ends a hang).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, FaultPlan

CYCLES = int(os.environ.get("HARPOON_SOAK_CYCLES", "2000"))
IN_FLIGHT = int(os.environ.get("HARPOON_SOAK_IN_FLIGHT", "200"))
SEED = 20261126


@pytest.mark.slow
async def test_concurrent_lease_cycles_with_faults_and_cancellations_leak_nothing() -> None:
    plan = FaultPlan(
        error_rate=0.07,
        rate_limit_rate=0.03,
        drop_rate=0.05,
        latency_rate=0.03,
        malformed_rate=0.02,
        seed=SEED,
        latency=0.05,
        retry_after=1,
    )
    emu = Emulator(pools={"gpu-pool-1": CYCLES * 2}, faults=plan, seed=SEED, ready_delay=0.05)
    rng = random.Random(SEED)
    outcomes: Counter[str] = Counter()
    cancelled_in: Counter[str] = Counter()

    with emu.serve() as base_url:
        http = httpx.AsyncClient(
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=None),
            timeout=httpx.Timeout(20.0, pool=120.0),
        )
        async with harpoon.AsyncHostedAI(
            base_url,
            "sk-test",
            http_client=http,
            retry=harpoon.RetryPolicy(max_retries=3, initial_backoff=0.05, max_backoff=0.5),
        ) as client:
            leases: dict[int, harpoon.AsyncLease] = {}

            async def cycle(i: int) -> None:
                lease = client.allocate(model="gemma-3-270m" if i % 2 else "qwen3-30b-a3b", ttl=600)
                leases[i] = lease
                async with lease:
                    await lease.infer(f"request {i}: summarise the plan", max_tokens=16)

            in_flight = asyncio.Semaphore(IN_FLIGHT)

            async def run(i: int, cancel_after: float | None) -> None:
                async with in_flight:
                    task = asyncio.create_task(cycle(i))
                    if cancel_after is not None:
                        await asyncio.sleep(cancel_after)
                        if not task.done():
                            cancelled_in[leases[i].state.value if i in leases else "start"] += 1
                        task.cancel()
                    try:
                        await task
                        outcomes["ok"] += 1
                    except asyncio.CancelledError:
                        outcomes["cancelled"] += 1
                    except harpoon.HostedAIError as exc:
                        outcomes[type(exc).__name__] += 1

            plans = [rng.uniform(0.0, 4.0) if rng.random() < 0.1 else None for _ in range(CYCLES)]
            await asyncio.gather(*(run(i, after) for i, after in enumerate(plans)))
            orphans = client.orphans()
            made_under = {key: ids[0] for key, ids in emu.created_by_key().items()}
            recorded = {o.allocation_id or made_under.get(o.idempotency_key or "") for o in orphans}
            live = {a.id for a in emu.live_allocations()}
            assert live <= recorded, "a leak nobody recorded"
            assert len(orphans) <= CYCLES // 100, f"too many orphans: {orphans[:5]}"
            emu.faults = None
            assert await client.release_orphans() == []
        await http.aclose()

    assert sum(outcomes.values()) == CYCLES
    assert outcomes["ok"] > CYCLES // 2, outcomes
    assert outcomes["cancelled"] > 0, outcomes
    # Cancellations landed while creating, waiting for readiness, in the block and releasing.
    assert {"creating", "waiting", "active", "releasing"} <= set(cancelled_in), cancelled_in
    assert emu.live_allocations() == []
    created = emu.created_by_key()
    assert all(len(ids) == 1 for ids in created.values()), "a key made two allocations"
    assert sum(len(ids) for ids in created.values()) == len(emu.allocations())
