"""Soak over TCP on the gpuaas emulator: orchestrated calls with the platform's quirks
(lost, empty and conflicting subscribes, policy errors as 500 and as 200, no capacity, empty
200s, slow unsubscribes, other teams' rows), transport faults and random cancellations.

At the end: no live subscription, no orphan, every subscription taken by one lease at most
(a subscribe that timed out having worked is adopted once, or released by its lease), and
no request ever named another team's subscription. ``soak()`` is also what
``scripts/gpuaas_soak.py`` runs at 2,000 calls. Bounded by its count of calls, never by wall
time (marked slow, as every soak here is: its per-test limit only ends a hang).
"""

from __future__ import annotations

import asyncio
import random
import tempfile
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon._leases._gpuaas import GpuaasPlane
from hostedai_harpoon.testing import Emulator, FaultPlan, GpuaasQuirks

SEED = 20261203
PROMPTS = ["Hi there!", "Prove step by step that there are infinitely many primes."]


class CountTimedOutSubscribes(httpx.AsyncBaseTransport):
    """Counts the subscribes the client gave up waiting for (made all the same, or not)."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport(
            limits=httpx.Limits(max_connections=None, max_keepalive_connections=None)
        )
        self.timed_out = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self.inner.handle_async_request(request)
        except httpx.TimeoutException:
            if request.url.path.endswith("/pool/subscribe"):
                self.timed_out += 1
            raise

    async def aclose(self) -> None:
        await self.inner.aclose()


def _owned_counts(monkeypatch: Any) -> Counter[str]:
    """Count, per subscription id, the leases that took it (``GpuaasPlane._owned``)."""
    counts: Counter[str] = Counter()
    original = GpuaasPlane._owned

    def spy(self: GpuaasPlane, row: Any, *args: Any) -> Any:
        counts[row.id] += 1
        return original(self, row, *args)

    monkeypatch.setattr(GpuaasPlane, "_owned", spy)
    return counts


async def soak(calls: int, monkeypatch: Any, seed: int = SEED) -> dict[str, Any]:
    """Run ``calls`` orchestrated one-shot calls (a tenth cancelled); return the figures."""
    quirks = GpuaasQuirks(
        seed=seed,
        empty_subscribe_rate=0.1,
        lost_subscribe_rate=0.05,
        lost_subscribe_delay=2.0,
        conflict_rate=0.03,
        unsubscribe_delay=0.05,
        other_teams=3,
        policy_error_rate=0.01,
        policy_error_200_rate=0.01,
        no_capacity_rate=0.03,
        empty_200_rate=0.01,
        ready_delay=0.02,
    )
    plan = FaultPlan(error_rate=0.01, drop_rate=0.01, latency_rate=0.02, latency=0.05, seed=seed)
    pools = {str(pool): 8 for pool in range(101, 107)}
    emu = Emulator(pools, dialect="gpuaas", gpuaas=quirks, faults=plan)
    owned = _owned_counts(monkeypatch)
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    with tempfile.TemporaryDirectory() as ledger, emu.serve() as base_url:
        counting = CountTimedOutSubscribes()
        http = httpx.AsyncClient(transport=counting, timeout=httpx.Timeout(1.0, pool=120.0))
        client = harpoon.AsyncHostedAI(
            base_url,
            "gpuaas-soak-key",
            dialect="gpuaas",
            team_id="team-soak",
            ledger_dir=ledger,
            http_client=http,
            timeout=1.0,
            retry=harpoon.RetryPolicy(max_retries=3, initial_backoff=0.01, max_backoff=0.1),
        )
        async with harpoon.Orchestrator(
            client, max_allocations=2, queue_timeout=120.0, idle_release=0.5
        ) as orch:
            tasks = [
                asyncio.create_task(orch.infer(PROMPTS[i % 2], max_tokens=16)) for i in range(calls)
            ]
            for victim in rng.sample(tasks, calls // 10):
                asyncio.get_running_loop().call_later(rng.uniform(0.0, 2.0), victim.cancel)
            for ended in await asyncio.gather(*tasks, return_exceptions=True):
                if isinstance(ended, harpoon.RoutedResult):
                    outcomes["result"] += 1
                elif isinstance(ended, asyncio.CancelledError):
                    outcomes["cancelled"] += 1
                elif isinstance(ended, harpoon.HostedAIError):
                    outcomes[type(ended).__name__] += 1
                else:
                    raise AssertionError(f"a call ended with {ended!r}")
        orphans = client.orphans()
        still = await client.release_orphans()  # an orphan is a release not confirmed
        await client.close()
        await http.aclose()
        live = emu.live_allocations()
    subscribes = emu.requests_to("POST", "/api/gpuaas/pool/subscribe")
    return {
        "outcomes": dict(outcomes),
        "live": len(live),
        "orphans": [o.error for o in orphans],
        "orphans_left": len(still),
        "foreign_touches": emu.foreign_touches,
        "subscribes": len(subscribes),
        "timed_out_subscribes": counting.timed_out,
        "taken_twice": sorted(i for i, n in owned.items() if n > 1),
        "subscriptions_taken": len(owned),
    }


@pytest.fixture
def patcher() -> Iterator[pytest.MonkeyPatch]:
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.mark.slow
async def test_orchestrated_calls_with_the_platforms_quirks_leak_nothing(
    patcher: pytest.MonkeyPatch,
) -> None:
    figures = await soak(300, patcher)
    assert figures["live"] == 0, figures
    assert figures["orphans_left"] == 0, figures
    assert figures["foreign_touches"] == 0, figures
    assert figures["taken_twice"] == [], figures
    assert figures["outcomes"].get("result", 0) > 100, figures
    assert figures["outcomes"].get("cancelled", 0) > 0, figures
