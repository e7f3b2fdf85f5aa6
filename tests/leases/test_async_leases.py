"""Async leases: released on every way out, cancellation at every await point included."""

from __future__ import annotations

import asyncio

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, Fault, FaultPlan
from tests.conftest import EmulatorFactory
from tests.dialects import Paths, made
from tests.leases.conftest import async_client


class Gate(httpx.AsyncBaseTransport):
    """Holds chosen requests until released, so a test can cancel while one is in flight.

    ``after=True`` lets the server act first and holds only the answer.
    """

    def __init__(self, inner: httpx.AsyncBaseTransport, method: str, path: str, *, after: bool):
        self.inner = inner
        self.method = method
        self.path = path
        self.after = after
        self.reached = asyncio.Event()
        self.opened = asyncio.Event()

    def _matches(self, request: httpx.Request) -> bool:
        path = request.url.path
        return request.method == self.method and (
            path == self.path or (self.path.endswith("*") and path.startswith(self.path[:-1]))
        )

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self._matches(request) or self.opened.is_set():
            return await self.inner.handle_async_request(request)
        if not self.after:
            self.reached.set()
            await self.opened.wait()
            return await self.inner.handle_async_request(request)
        response = await self.inner.handle_async_request(request)
        self.reached.set()
        await self.opened.wait()
        return response


def gated_client(emu: Emulator, gate: Gate) -> harpoon.AsyncHostedAI:
    return harpoon.AsyncHostedAI(
        "http://127.0.0.1:8080", "sk-test", http_client=httpx.AsyncClient(transport=gate)
    )


async def test_the_lease_is_ready_in_the_block_and_released_after(
    emulator: Emulator, aclient: harpoon.AsyncHostedAI
) -> None:
    async with aclient.allocate(model="qwen3-30b-a3b") as lease:
        assert [a.id for a in emulator.live_allocations()] == [lease.id]
        result = await lease.infer("Prove that there are infinitely many primes.")
        assert result.usage.output_tokens > 0
    assert emulator.live_allocations() == []


async def test_release_runs_when_the_block_raises(
    emulator: Emulator, aclient: harpoon.AsyncHostedAI
) -> None:
    with pytest.raises(ValueError, match="boom"):
        async with aclient.allocate(model="gemma-3-270m"):
            raise ValueError("boom")
    assert emulator.live_allocations() == []


async def test_release_runs_when_the_block_is_cancelled(
    emulator: Emulator, aclient: harpoon.AsyncHostedAI
) -> None:
    inside = asyncio.Event()

    async def hold() -> None:
        async with aclient.allocate(model="gemma-3-270m"):
            inside.set()
            await asyncio.sleep(60)

    task = asyncio.create_task(hold())
    await asyncio.wait_for(inside.wait(), 5)
    assert len(emulator.live_allocations()) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert emulator.live_allocations() == []


@pytest.mark.parametrize("after", [False, True], ids=["before-the-server-acts", "answer-held"])
async def test_cancelled_during_the_create_leaves_nothing_behind(
    emulator: Emulator, paths: Paths, after: bool
) -> None:
    gate = Gate(emulator.async_transport(), *paths.create, after=after)
    async with gated_client(emulator, gate) as client:
        task = asyncio.create_task(client.allocate(model="gemma-3-270m").__aenter__())
        await asyncio.wait_for(gate.reached.wait(), 5)
        task.cancel()
        gate.opened.set()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert emulator.live_allocations() == []
    assert all(len(ids) == 1 for ids in emulator.created_by_key().values())
    assert made(emulator) <= 1


async def test_cancelled_while_waiting_for_readiness_releases(
    make_emulator: EmulatorFactory, paths: Paths
) -> None:
    emu = make_emulator(ready_delay=60)
    async with async_client(emu) as client:
        task = asyncio.create_task(client.allocate(model="gemma-3-270m").__aenter__())
        while not emu.requests_to(*paths.ready):
            await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert made(emu) == 1
    assert emu.live_allocations() == []


async def test_cancelled_during_the_release_still_releases(
    emulator: Emulator, paths: Paths
) -> None:
    gate = Gate(emulator.async_transport(), *paths.release, after=False)
    async with gated_client(emulator, gate) as client:

        async def cycle() -> None:
            async with client.allocate(model="gemma-3-270m"):
                pass

        task = asyncio.create_task(cycle())
        await asyncio.wait_for(gate.reached.wait(), 5)
        task.cancel()
        await asyncio.sleep(0.05)
        assert not task.done(), "the release must not be abandoned on cancellation"
        gate.opened.set()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert emulator.live_allocations() == []


async def test_a_release_that_fails_transiently_is_retried(
    make_emulator: EmulatorFactory, paths: Paths, waits: list[float]
) -> None:
    method, path = paths.release
    plan = FaultPlan(rules=[Fault("error", method=method, path=path, times=2)])
    emu = make_emulator(faults=plan)
    async with async_client(emu) as client:
        async with client.allocate(model="gemma-3-270m"):
            pass
        assert client.orphans() == []
    assert len(emu.requests_to(*paths.release)) == 3
    assert emu.live_allocations() == []


async def test_a_release_that_keeps_failing_is_an_orphan_and_the_user_error_survives(
    make_emulator: EmulatorFactory, paths: Paths, waits: list[float]
) -> None:
    method, path = paths.release
    plan = FaultPlan(rules=[Fault("error", method=method, path=path)])
    emu = make_emulator(faults=plan)
    async with async_client(emu) as client:
        with pytest.raises(ValueError, match="the user's own") as info:
            async with client.allocate(model="gemma-3-270m") as lease:
                raise ValueError("the user's own error")
        assert any("releasing the allocation also failed" in n for n in info.value.__notes__)
        assert [o.allocation_id for o in client.orphans()] == [lease.id]
        emu.faults = None
        assert await client.release_orphans() == []
    assert emu.live_allocations() == []


async def test_a_release_that_hangs_is_bounded_by_the_release_timeout(
    emulator: Emulator, paths: Paths
) -> None:
    gate = Gate(emulator.async_transport(), *paths.release, after=False)
    async with gated_client(emulator, gate) as client:
        with pytest.raises(harpoon.AllocationError, match="did not finish"):
            async with client.allocate(model="gemma-3-270m", release_timeout=0.2):
                pass
        assert len(client.orphans()) == 1
        gate.opened.set()
        assert await client.release_orphans() == []
    assert emulator.live_allocations() == []


@pytest.mark.v1_only("a lease is lost when its TTL renewal fails; the platform has no TTL")
async def test_a_lost_allocation_makes_the_next_call_raise_without_sending_it(
    emulator: Emulator, aclient: harpoon.AsyncHostedAI
) -> None:
    async with aclient.allocate(model="gemma-3-270m", renew_interval=0.02) as lease:
        emulator.expire_allocation(lease.id)
        for _ in range(500):
            if lease.state is harpoon.LeaseState.LOST:
                break
            await asyncio.sleep(0.01)
        assert lease.state is harpoon.LeaseState.LOST
        with pytest.raises(harpoon.AllocationError, match="lost"):
            await lease.infer("anyone there?")
    assert emulator.requests_to("POST", "/v1/inference") == []


@pytest.mark.v1_only("the platform has no TTL to renew")
async def test_the_keepalive_renews_the_ttl(
    emulator: Emulator, aclient: harpoon.AsyncHostedAI
) -> None:
    async with aclient.allocate(model="gemma-3-270m", renew_interval=0.02) as lease:
        await asyncio.sleep(0.2)
        renewals = emulator.requests_to("POST", "/v1/allocate/*/renew")
        assert len(renewals) >= 3
        assert all(r.status == 200 for r in renewals)
        assert lease.state is harpoon.LeaseState.ACTIVE


async def test_the_per_pool_limit_queues_allocations(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator()
    peak: list[int] = []
    async with async_client(emu, max_allocations_per_pool=2) as client:

        async def cycle() -> None:
            async with client.allocate(model="gemma-3-270m"):
                peak.append(len(emu.live_allocations()))
                await asyncio.sleep(0.02)

        await asyncio.wait_for(asyncio.gather(*(cycle() for _ in range(6))), 20)
    assert len(peak) == 6
    assert max(peak) <= 2
    assert emu.live_allocations() == []


async def test_a_full_pool_is_waited_out(
    make_emulator: EmulatorFactory, dialect: str, waits: list[float]
) -> None:
    emu = make_emulator(pools={"gpu-pool-1": 1})
    async with async_client(emu) as client:
        first = client.allocate(model="gemma-3-270m")
        await first.__aenter__()
        emu_waits_before = len(waits)

        async def free_soon() -> None:
            while len(waits) < emu_waits_before + 3:
                await asyncio.sleep(0)
            await first.__aexit__(None, None, None)

        freeing = asyncio.create_task(free_soon())
        async with client.allocate(model="gemma-3-270m") as second:
            assert [a.id for a in emu.live_allocations()] == [second.id]
        await freeing
        assert dialect != "v1" or 1.0 in waits  # the emulator's Retry-After was honoured
    assert emu.live_allocations() == []


@pytest.mark.v1_only("ends by expiring the allocation (a TTL); the platform has none")
async def test_a_lease_stream_is_an_async_context_manager(
    emulator: Emulator, aclient: harpoon.AsyncHostedAI
) -> None:
    async with aclient.allocate(model="gemma-3-270m") as lease:
        async with lease.stream("Count to five.", max_tokens=8) as chunks:
            first = await anext(aiter(chunks))
            assert first.delta
        assert emulator.streams_aborted == 1  # leaving the block closed it early
        emulator.expire_allocation(lease.id)
        with pytest.raises(harpoon.AllocationError, match="lost"):
            async with lease.stream("anyone?"):
                pytest.fail("the block must not run")
    assert emulator.live_allocations() == []
