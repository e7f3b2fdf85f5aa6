"""Failover: what moves a call to another target, what does not, and how a failing target
is avoided and then probed again."""

from __future__ import annotations

import json
from collections.abc import Sequence

import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, Fault, FaultPlan, ManualClock, PoolSpec
from tests.conftest import EmulatorFactory
from tests.dialects import PATHS, Paths
from tests.orchestrator.conftest import Connect, live_ids

pytestmark = pytest.mark.timeout(60)

COMPLEX = (
    "Prove step by step that the square root of 2 is irrational, then explain why the "
    "proof fails for 4. Justify each inference rigorously."
)
SMALL = harpoon.Target("gemma-3-270m", tier="small", pool="small-pool", cost_per_gpu_hour=0.4)
LARGE = harpoon.Target("qwen3-30b-a3b", tier="large", pool="large-pool", cost_per_gpu_hour=2.5)
POOLS = [
    PoolSpec("small-pool", gpus=4, models=("gemma-3-270m",)),
    PoolSpec("large-pool", gpus=4, models=("qwen3-30b-a3b",)),
]


def one_inference_fails(paths: Paths) -> FaultPlan:
    """The next inference fails with a 500."""
    method, path = paths.inference
    return FaultPlan(rules=[Fault("error", status=500, method=method, path=path, times=1)])


def allocations_in(emu: Emulator, pool: str) -> int:
    """How many allocations (subscriptions) were asked of ``pool``."""
    asked = [json.loads(x.request_body) for x in emu.requests_to(*PATHS[emu.dialect].create)]
    return len([body for body in asked if str(body.get("pool_id")) == pool])


async def test_a_target_whose_pool_is_empty_is_failed_over_then_avoided_then_probed(
    make_emulator: EmulatorFactory, connect: Connect
) -> None:
    emu = make_emulator(pools=POOLS)
    clock = ManualClock(0)
    async with harpoon.Orchestrator(
        connect(emu), targets=[SMALL, LARGE], clock=clock.now, pool_refresh=5.0
    ) as orch:
        await orch.process("Hi!")  # reads the pools: both have room
        squatters = [  # someone else takes every GPU of the large pool
            await orch.client.create_allocation("qwen3-30b-a3b", pool_id="large-pool")
            for _ in range(4 if emu.dialect == "v1" else 0)
        ]
        if emu.dialect == "gpuaas":  # (one subscription per team and pool: no squatter here)
            emu.set_capacity("large-pool", 0)

        failed_over = await orch.process(COMPLEX)
        assert [a.target.name for a in failed_over.attempts] == ["qwen3-30b-a3b", "gemma-3-270m"]
        first = failed_over.attempts[0]
        assert isinstance(first.error, harpoon.AllocationError)
        assert isinstance(first.error.__cause__, harpoon.CapacityError)
        assert failed_over.target.name == "gemma-3-270m"
        assert failed_over.decision.reason.startswith("failed over to gemma-3-270m")
        assert orch.snapshot().targets["qwen3-30b-a3b"].failovers == 1

        tries = allocations_in(emu, "large-pool")  # the squatters' and the one refused
        avoided = await orch.process(COMPLEX)  # the pools were read again after the 503
        assert avoided.target.name == "gemma-3-270m"
        assert "skipped qwen3-30b-a3b: no capacity" in avoided.decision.reason
        assert len(avoided.attempts) == 1
        assert allocations_in(emu, "large-pool") == tries

        for squatter in squatters:  # and lets them go
            await orch.client.release_allocation(squatter.id)
        emu.set_capacity("large-pool", 4)
        clock.advance(5.0)  # the pools are due for another read
        await orch.process("Hi!")  # starts it, in the background: calls keep their order
        await orch._engine.refresh_pools()  # (the read, done)
        probed = await orch.process(COMPLEX)
        assert probed.target.name == "qwen3-30b-a3b"
        assert [a.error for a in probed.attempts] == [None]
    assert live_ids(emu) == []


async def test_a_target_whose_inference_keeps_failing_is_failed_over_avoided_and_probed(
    make_emulator: EmulatorFactory, connect: Connect, paths: Paths
) -> None:
    emu = make_emulator(pools=POOLS)
    clock = ManualClock(0)
    breaker = harpoon.CircuitBreakerConfig(minimum_calls=2, open_duration=30.0)
    async with harpoon.Orchestrator(
        connect(emu, max_retries=0),
        targets=[SMALL, LARGE],
        clock=clock.now,
        circuit_breaker=breaker,
    ) as orch:
        for _ in range(2):
            emu.faults = one_inference_fails(
                paths
            )  # the large target's inference is the one to fail
            routed = await orch.process(COMPLEX)
            assert [a.target.name for a in routed.attempts] == ["qwen3-30b-a3b", "gemma-3-270m"]
            assert isinstance(routed.attempts[0].error, harpoon.InternalServerError)
            assert routed.result.model == "gemma-3-270m"
        emu.faults = None

        avoided = await orch.process(COMPLEX)
        assert avoided.target.name == "gemma-3-270m"
        assert "skipped qwen3-30b-a3b: circuit breaker open" in avoided.decision.reason
        assert (await orch.health()).targets["qwen3-30b-a3b"].verdict == "down"

        clock.advance(30.0)  # the cool-down is over: one probe may go
        probed = await orch.process(COMPLEX)
        assert probed.target.name == "qwen3-30b-a3b"
        assert [a.error for a in probed.attempts] == [None]
        health = (await orch.health()).targets["qwen3-30b-a3b"]
        assert health.circuit is harpoon.CircuitState.CLOSED
    assert live_ids(emu) == []


async def test_a_422_is_raised_at_once_and_never_failed_over(
    make_emulator: EmulatorFactory, connect: Connect, paths: Paths
) -> None:
    emu = make_emulator(pools=POOLS)
    async with harpoon.Orchestrator(connect(emu), targets=[SMALL, LARGE]) as orch:
        read = [e.path for e in emu.exchanges]
        assert read[0] == paths.pools[1]  # entering read the pools
        with pytest.raises(harpoon.ConfigurationError, match="temperature"):
            await orch.process(COMPLEX, temperature=5.0)  # out of range: the request is wrong
        assert [e.path for e in emu.exchanges] == read  # refused before leasing or sending
        stats = orch.snapshot().targets
        assert stats["qwen3-30b-a3b"].failovers == 0
        assert stats["gemma-3-270m"].requests == 0

    typo = harpoon.Target("typo", model="gemma-3-27Om", tier="small", pool="small-pool")
    async with harpoon.Orchestrator(
        connect(emu), targets=[typo, LARGE], policy=harpoon.CostPolicy()
    ) as orch:
        # v1 refuses the model when allocating; on gpuaas the pod's vLLM server says it at
        # the first call, a 404 as vLLM's. Either is raised, never failed over.
        with pytest.raises(
            (harpoon.UnprocessableEntityError, harpoon.NotFoundError),
            match=r"unknown_model|does not exist",
        ):
            await orch.process("Hi!")
    assert allocations_in(emu, "large-pool") == 0
    assert live_ids(emu) == []


async def test_when_every_attempt_fails_one_error_carries_them_all(
    make_emulator: EmulatorFactory, connect: Connect, paths: Paths
) -> None:
    emu = make_emulator(
        pools=POOLS,
        faults=FaultPlan(rules=[Fault("error", status=502, path=paths.inference[1])]),
    )
    async with harpoon.Orchestrator(connect(emu, max_retries=0), targets=[SMALL, LARGE]) as orch:
        with pytest.raises(harpoon.AllAttemptsFailedError) as caught:
            await orch.process(COMPLEX)
    error = caught.value
    assert not isinstance(error, harpoon.NoRouteError)  # targets did take the request
    assert [a.target.name for a in error.attempts] == ["qwen3-30b-a3b", "gemma-3-270m"]
    assert [a.reason for a in error.attempts] == ["routed", "failover"]
    assert all(isinstance(a.error, harpoon.InternalServerError) for a in error.attempts)
    assert all(a.allocation_id is not None for a in error.attempts)
    assert set(error.reasons) == {"qwen3-30b-a3b", "gemma-3-270m"}
    assert live_ids(emu) == []


async def test_max_attempts_bounds_the_failover(
    make_emulator: EmulatorFactory, connect: Connect, paths: Paths
) -> None:
    emu = make_emulator(
        pools=POOLS, faults=FaultPlan(rules=[Fault("error", status=503, path=paths.inference[1])])
    )
    async with harpoon.Orchestrator(
        connect(emu, max_retries=0), targets=[SMALL, LARGE], max_attempts=1
    ) as orch:
        with pytest.raises(harpoon.AllAttemptsFailedError) as caught:
            await orch.process(COMPLEX)
    assert [a.target.name for a in caught.value.attempts] == ["qwen3-30b-a3b"]
    assert len(emu.requests_to(*paths.inference)) == 1


async def test_a_cascade_escalates_by_itself_and_the_attempts_show_each_rung(
    make_emulator: EmulatorFactory, connect: Connect
) -> None:
    emu = make_emulator(pools=POOLS)
    async with harpoon.Orchestrator(
        connect(emu), targets=[SMALL, LARGE], policy=harpoon.CascadePolicy()
    ) as orch:
        routed = await orch.process("Tell me about GPUs.", max_tokens=3)  # cut off: escalate

        accepted = await orch.process("Tell me about GPUs.", max_tokens=200)
    assert [a.target.name for a in routed.attempts] == ["gemma-3-270m", "qwen3-30b-a3b"]
    assert routed.attempts[0].reason == "routed"
    assert routed.attempts[1].reason.startswith("escalated from gemma-3-270m")
    assert routed.target.name == "qwen3-30b-a3b"
    assert routed.result.model == "qwen3-30b-a3b"
    assert [a.target.name for a in accepted.attempts] == ["gemma-3-270m"]
    assert live_ids(emu) == []


async def test_a_stream_fails_over_before_its_first_chunk(
    make_emulator: EmulatorFactory, connect: Connect, paths: Paths
) -> None:
    emu = make_emulator(pools=POOLS, faults=one_inference_fails(paths))
    async with (
        harpoon.Orchestrator(connect(emu, max_retries=0), targets=[SMALL, LARGE]) as orch,
        orch.allocate() as session,
        session.stream(COMPLEX, max_tokens=5) as chunks,
    ):
        text = "".join([chunk.delta async for chunk in chunks])
        assert chunks.decision.target.name == "gemma-3-270m"
        assert [a.target.name for a in chunks.attempts] == ["qwen3-30b-a3b", "gemma-3-270m"]
    assert len(text.split()) == 5
    # Once the stream ended, its answering attempt is timed (and priced) to that end.
    assert chunks.attempts[-1].seconds > 0
    assert chunks.attempts[-1].cost > 0
    assert orch.snapshot().targets["gemma-3-270m"].tokens_out == 5
    assert live_ids(emu) == []


async def test_a_breaker_opened_by_a_success_is_seen_by_the_next_call(
    make_emulator: EmulatorFactory, connect: Connect, paths: Paths
) -> None:
    # Two failures then a success reach the minimum of three calls at two thirds failed:
    # the success is what opens the breaker, and routing must notice it at once.
    emu = make_emulator(pools=POOLS)
    clock = ManualClock(0)
    breaker = harpoon.CircuitBreakerConfig(minimum_calls=3, open_duration=30.0)
    async with harpoon.Orchestrator(
        connect(emu, max_retries=0),
        targets=[SMALL, LARGE],
        clock=clock.now,
        circuit_breaker=breaker,
    ) as orch:
        for _ in range(2):
            emu.faults = one_inference_fails(paths)
            failed_over = await orch.process(COMPLEX)
            assert failed_over.attempts[0].error is not None
        emu.faults = None
        answered = await orch.process(COMPLEX)
        assert [a.target.name for a in answered.attempts] == ["qwen3-30b-a3b"]
        before = len(emu.requests_to(*paths.inference))

        avoided = await orch.process(COMPLEX)

        assert avoided.target.name == "gemma-3-270m"
        assert "skipped qwen3-30b-a3b: circuit breaker open" in avoided.decision.reason
        assert len(emu.requests_to(*paths.inference)) == before + 1
    assert live_ids(emu) == []


async def test_the_error_rate_routing_sees_forgets_failures_once_out_of_the_window(
    make_emulator: EmulatorFactory, connect: Connect, paths: Paths
) -> None:
    emu = make_emulator(pools=POOLS, faults=one_inference_fails(paths))
    clock = ManualClock(0)
    seen: list[dict[str, float]] = []

    def large_first(
        request: harpoon.RouteRequest, candidates: Sequence[harpoon.TargetState]
    ) -> harpoon.RouteDecision:
        seen.append({state.target.name: state.error_rate for state in candidates})
        return harpoon.RouteDecision(LARGE, "large first", fallbacks=(SMALL,))

    async with harpoon.Orchestrator(
        connect(emu, max_retries=0),
        targets=[SMALL, LARGE],
        policy=large_first,
        clock=clock.now,
        error_window=10.0,
        pool_refresh=1000.0,
    ) as orch:
        await orch.process("Hi!")  # fails on the large target, answered by the small one
        assert (await orch.health()).targets["qwen3-30b-a3b"].error_rate == 1.0

        clock.advance(10.5)  # no call since: only the window moved
        await orch.process("Hi!")

    assert seen[-1] == {"gemma-3-270m": 0.0, "qwen3-30b-a3b": 0.0}
    assert live_ids(emu) == []
