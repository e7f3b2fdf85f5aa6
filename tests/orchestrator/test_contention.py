"""The Orchestrator under contention: single-flight leasing, a patient queue, caps that hold
across scopes and failures, FIFO at all times, cost shares that add up, budgets that hold,
whole-call deadlines. Each test fails on the Orchestrator before this work."""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, Fault, FaultPlan, ManualClock
from tests.conftest import EmulatorFactory
from tests.dialects import Paths, model_of
from tests.orchestrator.conftest import Connect, live_ids

pytestmark = pytest.mark.timeout(120)

GEMMA = "gemma-3-270m"
QWEN = "qwen3-30b-a3b"
ROOM = 8  # a default target's max_concurrency
COMPLEX = "busy: prove rigorously, step by step, why sqrt(2) is irrational; then justify it."


class Recorder(httpx.AsyncBaseTransport):
    """Records each allocate request (when, status) and can delay releases' answers."""

    def __init__(self, inner: httpx.AsyncBaseTransport, *, release_delay: float = 0.0) -> None:
        self.inner = inner
        self.release_delay = release_delay
        self.allocates: list[tuple[float, int, str]] = []  # (time, status, model)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and request.url.path == "/v1/allocate":
            model = request.content.decode().split('"model":"', 1)[-1].split('"', 1)[0]
            self.allocates.append((time.monotonic(), response.status_code, model))
        if request.method == "DELETE" and self.release_delay:
            await response.aread()
            await asyncio.sleep(self.release_delay)  # the release lands late
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


@asynccontextmanager
async def peak_live(emu: Emulator, every: float = 0.002) -> AsyncIterator[list[int]]:
    """Sample the emulator's live allocations every few ms; yields [peak]."""
    peak = [0]

    async def sample() -> None:
        while True:
            peak[0] = max(peak[0], len(emu.live_allocations()))
            await asyncio.sleep(every)

    task = asyncio.create_task(sample())
    try:
        yield peak
    finally:
        peak[0] = max(peak[0], len(emu.live_allocations()))
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# Single flight


@pytest.mark.parametrize("calls", [32, 200])
async def test_a_burst_leases_only_the_allocations_it_needs(
    emulator: Emulator, connect: Connect, calls: int, paths: Paths
) -> None:
    async with harpoon.Orchestrator(connect(emulator), targets=[GEMMA]) as orch:
        routed = await asyncio.gather(*(orch.process("Hi there") for _ in range(calls)))
        assert len(routed) == calls
    leased = len(emulator.requests_to(*paths.create))
    assert 1 <= leased <= math.ceil(calls / ROOM)  # 32 calls: 1 allocation, not 32
    assert live_ids(emulator) == []


async def test_a_caller_cancelled_while_its_allocation_is_being_made_leaves_nothing(
    make_emulator: EmulatorFactory, connect: Connect, paths: Paths
) -> None:
    emu = make_emulator(ready_delay=0.2)
    async with harpoon.Orchestrator(connect(emu), targets=[GEMMA]) as orch:
        calls = [asyncio.create_task(orch.process("Hi there")) for _ in range(20)]
        while not emu.requests_to(*paths.create):
            await asyncio.sleep(0.002)
        for call in calls:
            call.cancel()
        await asyncio.gather(*calls, return_exceptions=True)
        assert live_ids(emu) == []  # nobody left to serve: the lease was stopped and released
        assert len(emu.allocations()) == 1  # one lease for the 20 (a cancelled create's
        # replay of its key, to learn what to release, makes nothing more)


# A full pool: a patient loop, not a storm


async def test_a_full_pool_gets_a_bounded_trickle_of_allocate_requests_and_no_recursion(
    make_emulator: EmulatorFactory, connect: Connect, paths: Paths
) -> None:
    """1,000 concurrent calls, a pool with room for 2 allocations, faults, over TCP."""
    # Room for 2 allocations: on gpuaas two pools, as the platform takes one subscription per
    # team and pool (with one, both targets would take turns at a single subscription).
    room = {"gpu-pool-1": 2} if paths.create[1] == "/v1/allocate" else {"101": 1, "102": 1}
    emu = make_emulator(
        pools=room,
        faults=FaultPlan(error_rate=0.05, seed=3),
        latency_scale=0.02,
    )
    recorder: list[Recorder] = []

    def wrap(inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        recorder.append(Recorder(inner))
        return recorder[0]

    started = time.monotonic()
    async with harpoon.Orchestrator(connect(emu, wrap=wrap)) as orch:
        outcomes = await asyncio.gather(
            *(orch.process(f"Hi there {i}") for i in range(1000)), return_exceptions=True
        )
    elapsed = time.monotonic() - started

    kinds = Counter(type(outcome).__name__ for outcome in outcomes)
    assert "RecursionError" not in kinds
    for outcome in outcomes:  # answered, or refused with a typed error
        assert isinstance(outcome, harpoon.RoutedResult | harpoon.HostedAIError), outcome
    assert kinds["RoutedResult"] >= 500, kinds  # (most: a failover to a full pool is a refusal)
    assert live_ids(emu) == []
    # The documented bound (docs/orchestrator.md): at most as many leases at once as the
    # pool has room for, then one per back-off wait (>= 0.125 s) and one per release.
    if emu.dialect == "gpuaas":
        # The platform's full pool is refused here, on the client (the team holds the one
        # subscription it can have in it), after reading the pools and the team's list:
        # bound every request to the platform, a lease and a release taking up to 10.
        platform = [e for e in emu.exchanges if e.path.startswith("/api/")]
        bound = 10 * (len(emu.allocations()) + 2 + 2 * elapsed / 0.125)
        assert len(platform) <= bound, (len(platform), len(emu.allocations()), elapsed)
        return
    releases = Counter(
        emu.get(exchange.path.rsplit("/", 1)[1]).model
        for exchange in emu.requests_to(*paths.release)
    )
    for model in (GEMMA, QWEN):
        refused = [t for t, status, m in recorder[0].allocates if m == model and status == 503]
        assert len(refused) <= 2 + elapsed / 0.125 + releases[model], (model, len(refused))


async def test_a_lease_refused_for_a_full_pool_waits_for_retry_after_before_the_next_try(
    make_emulator: EmulatorFactory, connect: Connect, paths: Paths
) -> None:
    emu = make_emulator(pools={"gpu-pool-1": 1})
    # One lease finds the pool full: on v1 its allocate is answered 503 (Retry-After: 1 s);
    # on gpuaas the team's list shows it holds the pool's one subscription, and the lease is
    # refused on the client (waiting 0.25 s, doubling, with no Retry-After).
    refusal = {
        "v1": [(*paths.create, 503)],
        "gpuaas": [("GET", "/api/gpuaas/pool-subscription", 200)],
    }[emu.dialect]

    def creates() -> list[int | None]:
        return [e.status for e in emu.requests_to(*paths.create)]

    async with harpoon.Orchestrator(connect(emu), targets=[GEMMA]) as orch:
        # Someone else takes the only GPU after the pools were read.
        squatter = await orch.client.create_allocation(QWEN)
        made = creates()
        before = len(emu.exchanges)
        for _ in range(50):  # calls keep coming while the pool stays full
            with pytest.raises((harpoon.AllAttemptsFailedError, harpoon.NoRouteError)):
                await orch.process("Hi there")
        # The 49 calls after the refused one were refused at once, sending nothing (but
        # for the pools, read again in the background after a refusal).
        sent = [(e.method, e.path, e.status) for e in emu.exchanges[before:]]
        assert [x for x in sent if x[:2] != paths.pools] == refusal
        await orch.client.release_allocation(squatter.id)
        await asyncio.sleep(1.1)
        await orch.health()  # (the pools read again)
        routed = await orch.process("Hi there")  # after the wait, one probe, and it fits
        assert routed.target.name == GEMMA
        refused = [status for method, path, status in refusal if (method, path) == paths.create]
        assert creates() == [*made, *refused, made[0]]
    assert live_ids(emu) == []


# Caps that hold


@pytest.mark.parametrize(("cap", "failing", "release_delay"), [(3, 0.2, 0.0), (3, 0.2, 0.15)])
async def test_max_allocations_holds_on_the_server_when_calls_fail(
    make_emulator: EmulatorFactory,
    connect: Connect,
    cap: int,
    failing: float,
    release_delay: float,
    paths: Paths,
) -> None:
    emu = make_emulator(faults=FaultPlan(error_rate=failing, seed=11, paths=[paths.inference]))

    def wrap(inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        return Recorder(inner, release_delay=release_delay)

    one_each = harpoon.Target(GEMMA, tier="small", max_concurrency=1)
    async with (
        harpoon.Orchestrator(
            connect(emu, wrap=wrap, max_retries=0), targets=[one_each], max_allocations=cap
        ) as orch,
        peak_live(emu) as peak,
    ):
        await asyncio.gather(*(orch.process("Hi") for _ in range(60)), return_exceptions=True)
    assert 1 <= peak[0] <= cap  # an allocation counts until its release has ended
    assert live_ids(emu) == []


async def test_max_allocations_of_the_orchestrator_holds_across_its_sessions(
    emulator: Emulator, connect: Connect
) -> None:
    one_each = harpoon.Target(GEMMA, tier="small", max_concurrency=1)
    async with (
        harpoon.Orchestrator(connect(emulator), targets=[one_each], max_allocations=3) as orch,
        peak_live(emulator) as peak,
    ):

        async def session_work() -> None:
            async with orch.allocate() as session:
                await asyncio.gather(*(session.infer("Hi") for _ in range(6)))

        await asyncio.gather(*(session_work() for _ in range(4)), orch.process("Hi"))
    assert 1 <= peak[0] <= 3
    assert live_ids(emulator) == []


async def test_the_queue_is_fifo_while_the_pools_are_read_again(
    make_emulator: EmulatorFactory, connect: Connect
) -> None:
    emu = make_emulator(latency_scale=0.05)
    one_at_a_time = harpoon.Target(QWEN, tier="large", max_concurrency=1)
    finished: list[int] = []
    async with harpoon.Orchestrator(
        connect(emu), targets=[one_at_a_time], max_allocations=1, pool_refresh=0.0
    ) as orch:
        await orch.process("warm up")

        async def call(i: int) -> None:
            await orch.process(f"call {i}")
            finished.append(i)

        tasks = []
        for i in range(12):  # each arrives while the pools are (always) due for a read
            tasks.append(asyncio.create_task(call(i)))
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
    assert finished == list(range(12))


# Failover rule


@pytest.mark.parametrize(
    ("error", "moves_on", "counts_against_target"),
    [
        (harpoon.BadRequestError("x", status_code=400), False, False),
        (harpoon.AuthenticationError("x", status_code=401), False, False),
        (harpoon.PermissionDeniedError("x", status_code=403), False, False),
        (harpoon.NotFoundError("x", status_code=404), False, False),
        (harpoon.APIStatusError("x", status_code=408), True, True),
        (harpoon.ConflictError("x", status_code=409), True, True),
        (harpoon.GoneError("x", status_code=410), True, True),
        (harpoon.UnprocessableEntityError("x", status_code=422), False, False),
        (harpoon.RateLimitError("x", status_code=429), True, False),
        (harpoon.APIStatusError("x", status_code=418), False, False),
        (harpoon.InternalServerError("x", status_code=500), True, True),
        (harpoon.InternalServerError("x", status_code=502), True, True),
        (harpoon.InternalServerError("x", status_code=503), True, True),
        (harpoon.CapacityError("x", status_code=503), True, False),
        (harpoon.InternalServerError("x", status_code=504), True, True),
        (harpoon.APIConnectionError("x"), True, True),
        (harpoon.APITimeoutError("x"), True, True),
        (harpoon.ResponseValidationError("x"), True, True),
        (harpoon.CircuitOpenError("x"), True, True),
        (harpoon.AllocationError("x"), True, True),
        (harpoon.BudgetExceededError("x", budget=1.0, spent=1.0), False, False),
        (harpoon.ConfigurationError("x"), False, False),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else str(value),
)
def test_the_failover_rule(
    error: harpoon.HostedAIError, moves_on: bool, counts_against_target: bool
) -> None:
    from hostedai_harpoon.orchestrator._failover import fails_over, judge

    assert fails_over(error) is moves_on
    assert (judge(error) == "failed") is counts_against_target


def test_a_full_pool_behind_an_allocation_error_moves_on_without_counting() -> None:
    from hostedai_harpoon.orchestrator._failover import judge

    full = harpoon.AllocationError("no capacity")
    full.__cause__ = harpoon.CapacityError("full", status_code=503)
    assert judge(full) == "busy"


async def test_429_moves_the_call_on_without_counting_against_the_target(
    emulator: Emulator, connect: Connect
) -> None:
    def wrap(inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        class Busy(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                if model_of(emulator, request) == QWEN:
                    return httpx.Response(
                        429,
                        headers={"retry-after": "0"},
                        json={"error": {"type": "rate_limited", "code": "rate_limited"}},
                    )
                return await inner.handle_async_request(request)

        return Busy()

    async with harpoon.Orchestrator(
        connect(emulator, wrap=wrap, max_retries=0), targets=[QWEN, GEMMA]
    ) as orch:
        for _ in range(8):  # twice the breaker's minimum_calls
            routed = await orch.process(COMPLEX)
            assert [a.target.name for a in routed.attempts] == [QWEN, GEMMA]
        (health,) = [h for h in (await orch.health()).targets.values() if h.target.name == QWEN]
        assert health.circuit is harpoon.CircuitState.CLOSED
        assert health.error_rate == 0.0


# Costs that add up


@pytest.mark.parametrize("calls", [20])
async def test_the_calls_costs_and_the_idle_cost_add_up_to_what_the_session_spent(
    make_emulator: EmulatorFactory, connect: Connect, calls: int
) -> None:
    emu = make_emulator(latency_scale=0.05)
    async with harpoon.Orchestrator(connect(emu), targets=[GEMMA]) as orch:
        async with orch.allocate() as session:
            routed = await asyncio.gather(*(session.infer(f"Hi {i}") for i in range(calls)))
        spent, idle = session.spent, session.idle_cost
        assert orch.snapshot().targets[GEMMA].idle_cost > 0.0
    assert spent > 0.0
    assert sum(r.cost for r in routed) + idle == pytest.approx(spent, rel=0.01)
    for r in routed:
        assert r.cost == pytest.approx(sum(a.cost for a in r.attempts))
    # The calls shared one GPU: each paying its own wall time would count it many times.
    wall = sum(r.latency for r in routed) * routed[0].target.cost_per_hour / 3600.0
    assert wall > 1.5 * spent


async def test_two_calls_at_once_each_pay_half_of_that_stretch() -> None:
    from hostedai_harpoon.orchestrator._group import Slot

    clock = ManualClock(0.0)

    class Lease:
        id = "alloc_1"

    target = harpoon.Target(GEMMA, tier="small", cost_per_gpu_hour=3600.0)  # $1 a second
    slot = Slot(target, Lease(), None, clock.now(), leased_at=-1.0)  # type: ignore[arg-type]
    slot.account(clock.now())
    slot.in_use = 1
    first = slot.share
    clock.advance(2.0)  # alone for 2 s: $2
    slot.account(clock.now())
    slot.in_use = 2
    second = slot.share
    clock.advance(4.0)  # together for 4 s: $2 each
    slot.account(clock.now())
    slot.in_use = 1
    assert slot.share - second == pytest.approx(2.0)
    clock.advance(1.0)  # the first alone again for 1 s
    slot.account(clock.now())
    slot.in_use = 0
    assert slot.share - first == pytest.approx(5.0)
    clock.advance(3.0)
    slot.account(clock.now())
    assert slot.idle_cost == pytest.approx(1.0 + 3.0)  # making it, and warm with no call
    assert 5.0 + 2.0 + slot.idle_cost == pytest.approx(slot.cost(clock.now()))


# Budgets that hold


async def test_a_spent_budget_refuses_a_stream_before_anything_is_sent(
    emulator: Emulator, connect: Connect, paths: Paths
) -> None:
    clock = ManualClock(0)
    async with (
        harpoon.Orchestrator(connect(emulator), clock=clock.now) as orch,
        orch.allocate(prewarm=[QWEN], budget=0.01) as session,
    ):
        clock.advance(15.0)  # $0.0104 at $2.50/h
        with pytest.raises(harpoon.BudgetExceededError):
            async with session.stream("Hi!", target=QWEN):
                pytest.fail("the block must not run")  # pragma: no cover
        assert emulator.requests_to(*paths.inference) == []


@pytest.mark.parametrize("scenario", ["burst", "at-95%", "idle"])
async def test_a_budget_caps_what_a_session_spends_at_any_concurrency(
    make_emulator: EmulatorFactory, connect: Connect, scenario: str
) -> None:
    budget = 0.0005
    emu = make_emulator(latency_scale=0.02)
    async with harpoon.Orchestrator(connect(emu)) as orch:
        async with orch.allocate(budget=budget) as session:
            if scenario == "burst":
                await asyncio.gather(
                    *(session.infer("Hi there") for _ in range(200)), return_exceptions=True
                )
            else:
                while session.spent < 0.95 * budget:
                    try:
                        await session.infer("Hi there")
                    except harpoon.BudgetExceededError:
                        break
                if scenario == "at-95%":
                    await asyncio.gather(
                        *(session.infer("Hi there") for _ in range(100)), return_exceptions=True
                    )
                else:
                    await asyncio.sleep(2.0)  # left idle once the budget is (nearly) reached
        spent = session.spent
    # The documented bound: at most one allocation's minimum billing unit over the budget.
    gemma = harpoon.DEFAULT_TARGETS[0]
    assert spent <= budget + gemma.cost_per_hour / 3600.0 * 5.0, (spent, budget)
    assert live_ids(emu) == []


# A bound on a call's time


async def test_a_deadline_covers_the_whole_call_every_target_included(
    emulator: Emulator, connect: Connect, paths: Paths
) -> None:
    def wrap(inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        class Stalls(httpx.AsyncBaseTransport):
            async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
                if paths.infers(request):
                    await asyncio.sleep(30.0)  # every target trickles forever
                return await inner.handle_async_request(request)

        return Stalls()

    async with harpoon.Orchestrator(connect(emulator, wrap=wrap), deadline=60.0) as orch:
        started = time.monotonic()
        with pytest.raises(harpoon.APITimeoutError, match=r"deadline of 0\.5s"):
            await orch.process("Hi", deadline=0.5)
        assert time.monotonic() - started < 10.0  # not 30 s, nor 30 s per target
        with pytest.raises(harpoon.ConfigurationError, match="deadline"):
            await orch.process("Hi", deadline=-1)
    assert live_ids(emulator) == []


async def test_a_target_whose_lease_fails_slowly_is_failed_over_before_its_clean_up_ends(
    make_emulator: EmulatorFactory, paths: Paths
) -> None:
    """Failover starts when the target's own attempts are used up, not after the patient
    release of whatever the failed create may have made."""
    slow = [Fault("latency", method="POST", path=paths.create[1], delay=3.0)]
    if paths.create[1].startswith("/api/"):  # gpuaas: a subscribe is looked for in the list
        listed = "/api/gpuaas/pool-subscription"  # (at once when listed before the subscribe)
        slow += [
            Fault("latency", path=listed, delay=0.0, times=1),
            Fault("latency", path=listed, delay=3.0),
        ]
    emu = make_emulator(faults=FaultPlan(rules=slow))
    gemma = harpoon.Target(GEMMA, tier="small", pool=emu.pools()[0].id)
    with emu.serve() as base_url, emu.serve_openai() as url:
        backup = harpoon.Target("backup", tier="large", model=QWEN, endpoint=url)
        async with (
            harpoon.AsyncHostedAI(base_url, "k", timeout=0.5, max_retries=1) as client,
            harpoon.Orchestrator(client, targets=[gemma, backup]) as orch,
        ):
            routed = await orch.process("Hi")
            assert [a.target.name for a in routed.attempts] == [GEMMA, "backup"]
            assert isinstance(routed.attempts[0].error, harpoon.AllocationError)
            # What the failed create may have made is still being let go, and counts.
            assert orch._fleet.live(GEMMA) == 1
        # Released, or (its id never arrived in time) kept in the orphan ledger.
        assert len(emu.live_allocations()) <= len(client.orphans())


async def test_sessions_never_used_leave_nothing_in_the_orchestrators_fleet(
    emulator: Emulator, connect: Connect
) -> None:
    async with harpoon.Orchestrator(connect(emulator)) as orch:
        await orch.process("Hi there")
        scopes = len(orch._fleet._scopes)
        for _ in range(1000):
            orch.allocate()  # made and dropped, never entered
        assert len(orch._fleet._scopes) == scopes
        async with orch.allocate() as session:
            await session.infer("Hi there")
            assert len(orch._fleet._scopes) == scopes + 1
        assert len(orch._fleet._scopes) == scopes
