"""Leak and cancellation paths found in review, each pinned by a test that failed before."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import attrs
import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon._leases._release import sigint_deferred
from hostedai_harpoon.testing import Emulator, Fault, FaultPlan
from tests.conftest import EmulatorFactory
from tests.dialects import Paths, made
from tests.leases.conftest import async_client, sync_client
from tests.leases.test_async_leases import Gate, gated_client


@pytest.mark.v1_only(
    "v1 replays the create under its key into the 429s; a lost subscribe is looked up in "
    "the list and adopted instead (tests/gpuaas: adopted exactly once)"
)
def test_a_lost_create_answer_then_a_429_still_leaves_nothing_behind(
    make_emulator: EmulatorFactory, paths: Paths, waits: list[float]
) -> None:
    method, path = paths.create
    plan = FaultPlan(
        rules=[
            Fault("drop", method=method, path=path, times=1, when="after"),
            Fault("rate_limit", method=method, path=path, times=2),
        ]
    )
    emu = make_emulator(faults=plan)
    with sync_client(emu) as client:
        with pytest.raises(harpoon.RateLimitError), client.allocate(model="gemma-3-270m"):
            pytest.fail("the block must not run")
        assert client.orphans() == []
    assert made(emu) == 1
    assert emu.live_allocations() == []


@pytest.mark.v1_only("expires the allocation (a TTL); gpuaas's 'already gone' is its 404")
def test_a_410_on_release_counts_as_released(emulator: Emulator, client: harpoon.HostedAI) -> None:
    with client.allocate(model="gemma-3-270m") as lease:
        emulator.expire_allocation(lease.id)
    assert lease.state is harpoon.LeaseState.RELEASED
    assert client.orphans() == []
    client.release_allocation(lease.id)  # 204 or 410 alike: nothing left to release


@pytest.mark.v1_only("pins v1's Retry-After on a full pool; the platform sends none")
def test_a_full_pool_gives_up_within_the_capacity_timeout(
    make_emulator: EmulatorFactory, waits: list[float]
) -> None:
    emu = make_emulator(pools={"gpu-pool-1": 1}, capacity_retry_after=5)
    with sync_client(emu) as client, client.allocate(model="gemma-3-270m"):
        with (
            pytest.raises(harpoon.AllocationError, match="no capacity"),
            client.allocate(model="gemma-3-270m", capacity_timeout=2),
        ):
            pytest.fail("the block must not run")
        # The server asked for 5 s, more than the 2 s budget: no wait, one attempt.
        assert waits == []
        assert len(emu.requests_to("POST", "/v1/allocate")) == 2


async def test_a_cancellation_during_a_failing_release_is_still_delivered(
    emulator: Emulator, paths: Paths, waits: list[float]
) -> None:
    method, path = paths.release
    emulator.faults = FaultPlan(rules=[Fault("error", status=500, method=method, path=path)])
    gate = Gate(emulator.async_transport(), method, path, after=False)
    async with gated_client(emulator, gate) as client:

        async def cycle() -> None:
            async with client.allocate(model="gemma-3-270m"):
                pass

        task = asyncio.create_task(cycle())
        await asyncio.wait_for(gate.reached.wait(), 5)
        task.cancel()
        gate.opened.set()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert len(client.orphans()) == 1


@pytest.mark.parametrize("flavor", ["sync", "async"])
async def test_releasing_over_a_closed_connection_pool_records_an_orphan_and_keeps_the_users_error(
    emulator: Emulator, flavor: str
) -> None:
    if flavor == "sync":
        http = emulator.http_client()
        client = harpoon.HostedAI("http://127.0.0.1:8080", "sk", http_client=http)
        with (  # noqa: PT012
            pytest.raises(ValueError, match="mine") as info,
            client.allocate(model="gemma-3-270m"),
        ):
            http.close()
            raise ValueError("mine")
        orphans = client.orphans()
    else:
        ahttp = emulator.async_http_client()
        aclient = harpoon.AsyncHostedAI("http://127.0.0.1:8080", "sk", http_client=ahttp)
        with pytest.raises(ValueError, match="mine") as info:  # noqa: PT012
            async with aclient.allocate(model="gemma-3-270m"):
                await ahttp.aclose()
                raise ValueError("mine")
        orphans = aclient.orphans()
    assert len(orphans) == 1
    assert "closed" in orphans[0].error
    assert any("releasing" in note for note in info.value.__notes__)
    assert len(emulator.live_allocations()) == 1


async def test_an_async_release_that_hangs_raises_allocation_error_and_records_an_orphan(
    emulator: Emulator, paths: Paths
) -> None:
    gate = Gate(emulator.async_transport(), *paths.release, after=False)
    async with gated_client(emulator, gate) as client:
        async with client.allocate(model="gemma-3-270m", release_timeout=0.2) as lease:
            with pytest.raises(harpoon.AllocationError, match="did not finish"):
                await lease.release()
            assert len(client.orphans()) == 1
        gate.opened.set()
        assert await client.release_orphans() == []
    assert emulator.live_allocations() == []


async def test_a_request_that_cannot_be_built_does_not_use_up_a_half_open_probe(
    emulator: Emulator,
) -> None:
    now = [0.0]
    client = async_client(emulator)
    breaker = harpoon.CircuitBreaker(
        harpoon.CircuitBreakerConfig(minimum_calls=1, open_duration=10), clock=lambda: now[0]
    )
    client._planner = attrs.evolve(client._planner, breaker=breaker)
    breaker.acquire()
    breaker.record(False, False)
    assert breaker.transitions[-1] == (harpoon.CircuitState.CLOSED, harpoon.CircuitState.OPEN)
    now[0] = 11.0
    allocation_id = "alloc_x"
    with pytest.raises(harpoon.ConfigurationError):
        await client.infer(allocation_id, object())  # type: ignore[arg-type]
    assert breaker.state is harpoon.CircuitState.HALF_OPEN
    assert (await client.health()).status == "ok"  # the probe was still there to take
    assert breaker.transitions[-1] == (harpoon.CircuitState.HALF_OPEN, harpoon.CircuitState.CLOSED)


def test_ctrl_c_held_back_during_a_release_reaches_the_programs_own_handler() -> None:
    seen: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: seen.append(signum))
    try:
        with sigint_deferred():
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            assert seen == []  # held back while the release runs
        time.sleep(0.05)
        assert seen == [signal.SIGINT]
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_bad_timeout_for_a_lease_is_a_configuration_error(client: harpoon.HostedAI) -> None:
    with pytest.raises(harpoon.ConfigurationError, match="ready_timeout"):
        client.allocate(model="gemma-3-270m", ready_timeout="5")  # type: ignore[arg-type]
    with pytest.raises(harpoon.ConfigurationError, match="capacity_timeout"):
        client.allocate(model="gemma-3-270m", capacity_timeout=-1)


class InterruptOnRelease(httpx.BaseTransport):
    """Passes requests through, but a release meets ``SystemExit`` (a SIGTERM handler, say)."""

    def __init__(self, inner: httpx.BaseTransport, paths: Paths) -> None:
        self.inner = inner
        self.paths = paths

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.paths.releases(request):
            raise SystemExit(143)
        return self.inner.handle_request(request)


def test_system_exit_during_a_sync_release_records_an_orphan(
    emulator: Emulator, paths: Paths
) -> None:
    http = httpx.Client(transport=InterruptOnRelease(emulator.transport(), paths))
    client = harpoon.HostedAI("http://127.0.0.1:8080", "sk", http_client=http)
    with pytest.raises(SystemExit), client.allocate(model="gemma-3-270m") as lease:
        pass
    assert lease.state is harpoon.LeaseState.ORPHANED
    assert [o.allocation_id for o in client.orphans()] == [lease.id]


def test_a_redirect_answering_a_release_is_not_taken_for_a_release(
    emulator: Emulator, paths: Paths
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if paths.releases(request):
            return httpx.Response(307, headers={"location": "https://elsewhere.invalid/"})
        return emulator.transport().handle_request(request)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    client = harpoon.HostedAI("http://127.0.0.1:8080", "sk", http_client=http)
    with (
        pytest.raises(harpoon.AllocationError, match="could not release"),
        client.allocate(model="gemma-3-270m") as lease,
    ):
        pass
    assert [o.allocation_id for o in client.orphans()] == [lease.id]


def test_a_zero_retry_after_on_a_full_pool_still_backs_off(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(pools={"gpu-pool-1": 1}, capacity_retry_after=0)
    with sync_client(emu) as client, client.allocate(model="gemma-3-270m"):
        with (
            pytest.raises(harpoon.AllocationError, match="no capacity"),
            client.allocate(model="gemma-3-270m", capacity_timeout=1.0),
        ):
            pytest.fail("the block must not run")
        assert len(emu.requests_to("POST", "/v1/allocate")) < 15


def test_a_lease_released_before_it_was_entered_cannot_be_entered(
    emulator: Emulator, client: harpoon.HostedAI
) -> None:
    lease = client.allocate(model="gemma-3-270m")
    lease.release()
    with pytest.raises(harpoon.AllocationError, match="only once"), lease:
        pytest.fail("the block must not run")
    assert made(emulator) == 0


def test_an_allocation_refused_before_sending_leaves_no_orphan(
    emulator: Emulator, client: harpoon.HostedAI
) -> None:
    with (
        pytest.raises(harpoon.ConfigurationError),
        client.allocate(model="gemma-3-270m", gpus=float("nan")),  # type: ignore[arg-type]
    ):
        pytest.fail("the block must not run")
    assert client.orphans() == []
    assert emulator.exchanges == []


@pytest.mark.parametrize(
    "options",
    [
        {"deadline": "5"},
        {"max_response_bytes": "x"},
        {"default_headers": {"x-number": 1}},
    ],
    ids=["deadline", "max_response_bytes", "default_headers"],
)
def test_bad_client_options_are_configuration_errors(options: dict[str, object]) -> None:
    with pytest.raises(harpoon.ConfigurationError):
        harpoon.HostedAI("http://127.0.0.1:8080", "sk", **options)  # type: ignore[arg-type]


def test_bad_lease_durations_are_configuration_errors(client: harpoon.HostedAI) -> None:
    with pytest.raises(harpoon.ConfigurationError, match="ttl"):
        client.allocate(model="gemma-3-270m", ttl=float("inf"))
    with pytest.raises(harpoon.ConfigurationError, match="release_timeout"):
        client.allocate(model="gemma-3-270m", release_timeout=0)


def test_a_second_ctrl_c_abandons_a_stuck_release_and_records_an_orphan(
    emulator: Emulator, paths: Paths
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if paths.releases(request):
            os.kill(os.getpid(), signal.SIGINT)
            # Two presses, not one: signals sent at once from another thread may merge.
            time.sleep(0.2)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.5)  # the second Ctrl-C lands here, mid-release
        return emulator.transport().handle_request(request)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    client = harpoon.HostedAI("http://127.0.0.1:8080", "sk", http_client=http)
    with pytest.raises(KeyboardInterrupt), client.allocate(model="gemma-3-270m") as lease:
        pass
    assert lease.state is harpoon.LeaseState.ORPHANED
    assert [o.allocation_id for o in client.orphans()] == [lease.id]
