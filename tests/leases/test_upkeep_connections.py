"""Renewals and releases never wait behind new work for a connection."""

from __future__ import annotations

import asyncio

import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, Fault, FaultPlan

pytestmark = pytest.mark.timeout(60)


async def test_a_release_goes_through_while_new_work_fills_the_connection_pool() -> None:
    slow = Fault("latency", method="POST", path="/v1/inference", delay=4.0)
    emu = Emulator(faults=FaultPlan(rules=[slow]))
    with emu.serve() as base_url:
        async with harpoon.AsyncHostedAI(base_url, "k", max_retries=0, timeout=30.0) as client:
            busy = await client.create_allocation("gemma-3-270m")
            async with client.allocate("gemma-3-270m") as lease:
                # 120 slow calls: every one of the pool's 100 connections is taken, and
                # 20 more calls wait for one.
                calls = [
                    asyncio.create_task(client.infer(busy.id, "Hi", max_tokens=4))
                    for _ in range(120)
                ]
                while len([e for e in emu.exchanges if e.path == "/v1/inference"]) < 1:
                    await asyncio.sleep(0.01)
                await asyncio.sleep(0.2)
            # Released through the renewals' and releases' own connections: before any
            # of the slow calls came back.
            assert not any(call.done() for call in calls)
            assert emu.get(lease.id).status.value == "released"
            await asyncio.gather(*calls, return_exceptions=True)
            await client.release_allocation(busy.id)
    assert emu.live_allocations() == []
