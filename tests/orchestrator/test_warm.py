"""Warm allocations on a ManualClock: idle release, min_warm, prewarm, budgets and queues."""

from __future__ import annotations

import asyncio

import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, ManualClock
from tests.conftest import EmulatorFactory
from tests.dialects import Paths
from tests.orchestrator.conftest import Connect, Ticks, live_ids

pytestmark = pytest.mark.timeout(60)

QWEN = "qwen3-30b-a3b"
GEMMA = "gemma-3-270m"


async def until(condition: object) -> None:
    while not condition():  # type: ignore[operator]
        await asyncio.sleep(0.002)


async def test_a_warm_allocation_is_released_after_idle_release_seconds_unused(
    emulator: Emulator, connect: Connect, ticks: Ticks, paths: Paths
) -> None:
    clock = ManualClock(0)
    async with harpoon.Orchestrator(
        connect(emulator), clock=clock.now, sleep=ticks, idle_release=30.0
    ) as orch:
        await orch.process("Hi!")
        clock.advance(29.0)
        await ticks.rounds()
        assert len(live_ids(emulator)) == 1  # not idle long enough

        await orch.process("Hi!")  # used again: the idle time starts over
        clock.advance(29.0)
        await ticks.rounds()
        assert len(live_ids(emulator)) == 1

        clock.advance(1.0)
        await ticks.rounds()
        await until(lambda: live_ids(emulator) == [])
        assert orch.snapshot().total.warm_allocations == 0
        assert len(emulator.requests_to(*paths.create)) == 1


async def test_min_warm_allocations_are_kept_through_idleness_and_replaced_when_lost(
    emulator: Emulator, connect: Connect, ticks: Ticks
) -> None:
    clock = ManualClock(0)
    async with harpoon.Orchestrator(
        connect(emulator), clock=clock.now, sleep=ticks, idle_release=30.0, min_warm={GEMMA: 1}
    ) as orch:
        await until(lambda: len(live_ids(emulator)) == 1)  # leased before any call
        (kept,) = live_ids(emulator)
        assert (
            emulator.dialect == "gpuaas" or emulator.get(kept).model == GEMMA
        )  # (a subscription names no model: the call below shows it)

        clock.advance(300.0)
        await ticks.rounds()
        assert live_ids(emulator) == [kept]
        routed = await orch.process("Hi!", target=GEMMA)
        assert routed.result.allocation_id == kept  # the call used the warm one

        emulator.expire_allocation(kept)
        with pytest.raises(harpoon.AllAttemptsFailedError):
            await orch.process("Hi!", target=GEMMA)  # finds it gone; pinned, so no failover
        await until(lambda: orch.snapshot().targets[GEMMA].warm_allocations == 1)
        assert len(live_ids(emulator)) == 1
        assert live_ids(emulator) != [kept]
    assert live_ids(emulator) == []


async def test_prewarm_leases_on_entering_so_the_first_call_waits_for_no_readiness(
    make_emulator: EmulatorFactory, connect: Connect, paths: Paths
) -> None:
    emu = make_emulator(ready_delay=0.05)
    async with harpoon.Orchestrator(connect(emu)) as orch, orch.allocate(prewarm=[QWEN]) as s:
        (prewarmed,) = emu.live_allocations()
        assert (
            emu.dialect == "gpuaas" or prewarmed.model == QWEN
        )  # (a subscription names no model: the call below shows it)
        assert prewarmed.status == (
            "subscribed" if emu.dialect == "gpuaas" else harpoon.AllocationStatus.READY
        )
        polls = len(emu.requests_to(*paths.ready))
        routed = await s.infer("Hi!", target=QWEN)
        assert routed.result.allocation_id == prewarmed.id
        assert len(emu.requests_to(*paths.ready)) == polls
    assert len(emu.requests_to(*paths.create)) == 1
    assert live_ids(emu) == []


async def test_a_spent_budget_refuses_the_next_call_before_anything_is_sent(
    emulator: Emulator, connect: Connect, paths: Paths
) -> None:
    clock = ManualClock(0)
    async with (
        harpoon.Orchestrator(connect(emulator), clock=clock.now) as orch,
        orch.allocate(prewarm=[QWEN], budget=0.01) as session,  # $0.01 at $2.50/h: 14.4 s
    ):
        await session.infer("Hi!", target=QWEN)
        clock.advance(13.0)
        await session.infer("Hi!", target=QWEN)  # $0.0090 spent: it still fits
        clock.advance(1.5)  # the allocation held idle meanwhile: $0.0101
        sent = len(emulator.requests_to(*paths.inference))
        with pytest.raises(harpoon.BudgetExceededError) as caught:
            await session.infer("Hi!", target=QWEN)
        assert len(emulator.requests_to(*paths.inference)) == sent
        await until(lambda: not session._slots._held)  # the budget is reached: let go of it
        assert emulator.live_allocations() == []
        assert len(emulator.requests_to(*paths.create)) == 1
    assert caught.value.budget == 0.01
    assert caught.value.spent == pytest.approx(14.5 * 2.5 / 3600)
    assert session.spent == pytest.approx(14.5 * 2.5 / 3600)


async def test_callers_beyond_max_allocations_wait_in_fifo_order(
    make_emulator: EmulatorFactory, connect: Connect, paths: Paths
) -> None:
    emu = make_emulator(latency_scale=0.05)
    one_at_a_time = harpoon.Target(QWEN, tier="large", max_concurrency=1)
    finished: list[int] = []
    async with (
        harpoon.Orchestrator(connect(emu), targets=[one_at_a_time]) as orch,
        orch.allocate(max_allocations=1) as session,
    ):

        async def call(i: int) -> None:
            await session.infer(f"question {i}")
            finished.append(i)

        await session.infer("warm up")  # the pools are read and the allocation is held
        tasks = []
        for i in range(6):
            tasks.append(asyncio.create_task(call(i)))
            await asyncio.sleep(0.001)  # each caller arrives after the one before
        await asyncio.gather(*tasks)
    assert finished == list(range(6))
    assert len(emu.requests_to(*paths.create)) == 1


async def test_a_caller_waiting_longer_than_queue_timeout_gets_a_typed_error(
    make_emulator: EmulatorFactory, connect: Connect, paths: Paths
) -> None:
    emu = make_emulator(latency_scale=0.5)  # a call holds its allocation a good while
    one_at_a_time = harpoon.Target(QWEN, tier="large", max_concurrency=1)
    async with harpoon.Orchestrator(
        connect(emu), targets=[one_at_a_time], max_allocations=1, queue_timeout=0.05
    ) as orch:
        first = asyncio.create_task(orch.process("Tell me a long story.", max_tokens=400))
        await until(lambda: orch.snapshot().total.in_flight == 1)
        with pytest.raises(harpoon.AllAttemptsFailedError) as caught:
            await orch.process("Hi!")
        (attempt,) = caught.value.attempts
        assert isinstance(attempt.error, harpoon.AllocationError)
        assert "max_allocations" in str(attempt.error)
        await first
    assert len(emu.requests_to(*paths.create)) == 1
    assert live_ids(emu) == []


async def test_a_prewarm_that_fails_releases_what_it_did_lease(
    make_emulator: EmulatorFactory, connect: Connect, paths: Paths
) -> None:
    emu = make_emulator(ready_delay=0.05)
    emu.fail_next_allocations(1)  # one of the two never becomes ready
    async with harpoon.Orchestrator(connect(emu)) as orch:
        with pytest.raises(harpoon.AllocationError, match="failed") as caught:
            async with orch.allocate(prewarm=[QWEN, GEMMA], require_prewarm=True):
                pytest.fail("the block must not run")  # pragma: no cover
        assert QWEN in str(caught.value)
        assert "capacity_timeout" in str(caught.value)  # the setting to raise for a full pool
        assert live_ids(emu) == []
        assert len(emu.requests_to(*paths.create)) == 2


async def test_by_default_a_prewarm_that_fails_opens_the_session_with_what_it_could_lease(
    make_emulator: EmulatorFactory, connect: Connect
) -> None:
    emu = make_emulator(ready_delay=0.05)
    emu.fail_next_allocations(1)  # one of the two never becomes ready
    async with harpoon.Orchestrator(connect(emu)) as orch:
        async with orch.allocate(prewarm=[QWEN, GEMMA]) as session:
            assert list(session.prewarm_errors) == [QWEN]
            assert isinstance(session.prewarm_errors[QWEN], harpoon.AllocationError)
            (held,) = emu.live_allocations()
            assert (
                emu.dialect == "gpuaas" or held.model == GEMMA
            )  # (a subscription names no model: the call below shows it)
            routed = await session.infer("Hi!", target=GEMMA)
            assert routed.result.allocation_id == held.id
        assert live_ids(emu) == []


@pytest.mark.timeout(20)
@pytest.mark.v1_only(
    "a lease learns of a loss while idle from its TTL renewal; the platform has no TTL, so "
    "a lost subscription is learned at the next call (the min_warm test shows it replaced)"
)
async def test_a_warm_allocation_lost_while_idle_is_replaced_without_a_call(
    emulator: Emulator, connect: Connect, ticks: Ticks
) -> None:
    clock = ManualClock(0)
    async with harpoon.Orchestrator(
        connect(emulator), clock=clock.now, sleep=ticks, min_warm={GEMMA: 1}, ttl=1.0
    ) as orch:
        await until(lambda: orch.snapshot().targets[GEMMA].warm_allocations == 1)
        (lost,) = live_ids(emulator)
        emulator.expire_allocation(lost)  # the lease learns it when it next renews
        await until(lambda: live_ids(emulator) not in ([], [lost]))
        await until(lambda: orch.snapshot().targets[GEMMA].warm_allocations == 1)
        assert lost not in live_ids(emulator)
    assert live_ids(emulator) == []
