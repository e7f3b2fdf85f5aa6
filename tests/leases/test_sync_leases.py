"""Sync leases: ready inside the block, released on every way out of it."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, Fault, FaultPlan, ManualClock
from tests.conftest import EmulatorFactory
from tests.dialects import PATHS, Paths, made
from tests.leases.conftest import sync_client


def test_the_lease_is_ready_in_the_block_and_released_after(
    emulator: Emulator, client: harpoon.HostedAI
) -> None:
    with client.allocate(model="gemma-3-270m") as lease:
        assert lease.allocation is not None
        assert lease.allocation.status is harpoon.AllocationStatus.READY
        assert [a.id for a in emulator.live_allocations()] == [lease.id]
        assert lease.infer("Hello").allocation_id == lease.id
    assert emulator.live_allocations() == []
    assert lease.state is harpoon.LeaseState.RELEASED


def test_release_runs_when_the_block_raises(emulator: Emulator, client: harpoon.HostedAI) -> None:
    with pytest.raises(ValueError, match="boom"), client.allocate(model="gemma-3-270m"):
        raise ValueError("boom")
    assert emulator.live_allocations() == []


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit])
def test_release_runs_on_keyboard_interrupt_and_system_exit(
    emulator: Emulator, client: harpoon.HostedAI, interrupt: type[BaseException]
) -> None:
    with pytest.raises(interrupt), client.allocate(model="qwen3-30b-a3b"):
        raise interrupt()
    assert emulator.live_allocations() == []


def test_entering_waits_until_the_allocation_is_ready(
    make_emulator: EmulatorFactory, paths: Paths
) -> None:
    emu = make_emulator(ready_delay=0.3)
    with sync_client(emu) as client, client.allocate(model="gemma-3-270m") as lease:
        assert lease.allocation is not None
        assert lease.allocation.status is harpoon.AllocationStatus.READY
        assert len(emu.requests_to(*paths.ready)) >= 1
    assert emu.live_allocations() == []


def test_a_failed_allocation_raises_and_holds_nothing(
    emulator: Emulator, client: harpoon.HostedAI
) -> None:
    emulator.fail_next_allocations(1)
    with (
        pytest.raises(harpoon.AllocationError, match="failed"),
        client.allocate(model="gemma-3-270m"),
    ):
        pytest.fail("the block must not run")
    assert emulator.live_allocations() == []


def test_not_ready_in_time_raises_and_releases_what_was_created(
    make_emulator: EmulatorFactory, paths: Paths
) -> None:
    emu = make_emulator(ready_delay=60)
    with sync_client(emu) as client:
        with (
            pytest.raises(harpoon.AllocationError, match="not ready within"),
            client.allocate(model="gemma-3-270m", ready_timeout=0.3),
        ):
            pytest.fail("the block must not run")
        assert made(emu) == 1
        assert emu.live_allocations() == []
        assert len(emu.requests_to(*paths.release)) == 1


class InterruptAfterCreate(httpx.BaseTransport):
    """Lets the server create the allocation, then raises Ctrl-C before the answer arrives."""

    def __init__(self, inner: httpx.BaseTransport, create: tuple[str, str]) -> None:
        self.inner = inner
        self.create = create
        self.armed = True

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if self.armed and (request.method, request.url.path) == self.create:
            self.armed = False
            response.close()
            raise KeyboardInterrupt
        return response


def test_ctrl_c_while_creating_releases_what_the_server_made(
    emulator: Emulator, paths: Paths
) -> None:
    transport = InterruptAfterCreate(emulator.transport(), paths.create)
    with (
        harpoon.HostedAI(
            "http://127.0.0.1:8080", "sk-test", http_client=httpx.Client(transport=transport)
        ) as client,
        pytest.raises(KeyboardInterrupt),
        client.allocate(model="gemma-3-270m"),
    ):
        pytest.fail("the block must not run")
    assert made(emulator) == 1
    assert emulator.live_allocations() == []
    assert all(len(ids) == 1 for ids in emulator.created_by_key().values())


def test_a_release_that_fails_transiently_is_retried(
    make_emulator: EmulatorFactory, paths: Paths, waits: list[float]
) -> None:
    method, path = paths.release
    plan = FaultPlan(rules=[Fault("error", method=method, path=path, times=2)])
    emu = make_emulator(faults=plan)
    with sync_client(emu) as client:
        with client.allocate(model="gemma-3-270m"):
            pass
        assert emu.live_allocations() == []
        assert len(emu.requests_to(*paths.release)) == 3
        assert client.orphans() == []


def test_a_release_that_keeps_failing_is_an_orphan_and_the_user_error_survives(
    make_emulator: EmulatorFactory,
    paths: Paths,
    waits: list[float],
    caplog: pytest.LogCaptureFixture,
) -> None:
    method, path = paths.release
    plan = FaultPlan(rules=[Fault("error", method=method, path=path)])
    emu = make_emulator(faults=plan)
    with sync_client(emu) as client:
        with (
            pytest.raises(ValueError, match="the user's own") as info,
            client.allocate(model="gemma-3-270m") as lease,
        ):
            raise ValueError("the user's own error")
        allocation_id = lease.id
        assert any("releasing the allocation also failed" in n for n in info.value.__notes__)
        assert [o.allocation_id for o in client.orphans()] == [allocation_id]
        assert lease.state is harpoon.LeaseState.ORPHANED
        assert allocation_id in caplog.text
        assert [a.id for a in emu.live_allocations()] == [allocation_id]

        emu.faults = None
        assert client.release_orphans() == []
        assert client.orphans() == []
        assert emu.live_allocations() == []


def test_a_failed_release_without_a_user_error_raises_allocation_error(
    make_emulator: EmulatorFactory, paths: Paths, waits: list[float]
) -> None:
    method, path = paths.release
    plan = FaultPlan(rules=[Fault("error", method=method, path=path)])
    emu = make_emulator(faults=plan)
    with sync_client(emu) as client:
        with (
            pytest.raises(harpoon.AllocationError, match="could not release"),
            client.allocate(model="gemma-3-270m"),
        ):
            pass
        assert len(client.orphans()) == 1


@pytest.mark.v1_only("the platform has no TTL to renew")
def test_the_keepalive_renews_the_ttl_while_the_block_runs(
    make_emulator: EmulatorFactory,
) -> None:
    clock = ManualClock()
    emu = make_emulator(clock=clock)

    def wait_for_renewals(count: int) -> None:
        deadline = time.monotonic() + 10
        while len(emu.requests_to("POST", "/v1/allocate/*/renew")) < count:
            assert time.monotonic() < deadline, "the keepalive stopped renewing"
            time.sleep(0.01)

    with (
        sync_client(emu) as client,
        client.allocate(model="gemma-3-270m", ttl=10, renew_interval=0.02) as lease,
    ):
        for round_ in range(1, 4):
            clock.advance(8)  # each step alone would not expire it; two without a renewal would
            wait_for_renewals(len(emu.requests_to("POST", "/v1/allocate/*/renew")) + 1)
            assert [a.id for a in emu.live_allocations()] == [lease.id], f"expired in {round_}"
        lease.infer("still here")
    assert emu.live_allocations() == []


@pytest.mark.v1_only("a lease is lost when its TTL renewal fails; the platform has no TTL")
def test_a_lost_allocation_makes_the_next_call_raise_without_sending_it(
    emulator: Emulator, client: harpoon.HostedAI
) -> None:
    with client.allocate(model="gemma-3-270m", renew_interval=0.05) as lease:
        emulator.expire_allocation(lease.id)
        deadline = time.monotonic() + 5
        while lease.state is not harpoon.LeaseState.LOST and time.monotonic() < deadline:
            time.sleep(0.01)
        assert lease.state is harpoon.LeaseState.LOST
        with pytest.raises(harpoon.AllocationError, match="lost"):
            lease.infer("anyone there?")
        assert emulator.requests_to("POST", "/v1/inference") == []


@pytest.mark.v1_only("expires the allocation (a TTL) and reads the 410 of /v1/inference")
def test_work_on_an_allocation_that_is_gone_raises_allocation_error(
    emulator: Emulator, client: harpoon.HostedAI
) -> None:
    with client.allocate(model="gemma-3-270m", renew_interval=3600) as lease:
        emulator.expire_allocation(lease.id)
        with pytest.raises(harpoon.AllocationError, match="lost") as info:
            lease.infer("hello")
        assert isinstance(info.value.__cause__, harpoon.GoneError)
        with pytest.raises(harpoon.AllocationError):
            lease.infer("again")
        assert len(emulator.requests_to("POST", "/v1/inference")) == 1


def test_a_full_pool_raises_after_the_capacity_timeout(
    make_emulator: EmulatorFactory, waits: list[float]
) -> None:
    emu = make_emulator(pools={"gpu-pool-1": 1})
    with sync_client(emu) as client, client.allocate(model="gemma-3-270m"):
        with (
            pytest.raises(harpoon.AllocationError, match="no capacity") as info,
            client.allocate(model="gemma-3-270m", capacity_timeout=0.5),
        ):
            pytest.fail("the block must not run")
        assert isinstance(info.value.__cause__, harpoon.CapacityError)
    assert emu.live_allocations() == []


def test_allocate_waits_for_capacity_to_free_up(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(pools={"gpu-pool-1": 1})
    with sync_client(emu) as client:
        first = client.allocate(model="gemma-3-270m")
        first.__enter__()
        timer = threading.Timer(0.3, first.__exit__, (None, None, None))
        timer.start()
        try:
            with client.allocate(model="gemma-3-270m", capacity_timeout=10) as second:
                assert [a.id for a in emu.live_allocations()] == [second.id]
        finally:
            timer.join()
    assert emu.live_allocations() == []


def test_the_per_pool_limit_queues_allocations(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator()
    peak: list[int] = []
    with sync_client(emu, max_allocations_per_pool=2) as client:

        def cycle() -> None:
            with client.allocate(model="gemma-3-270m"):
                peak.append(len(emu.live_allocations()))
                time.sleep(0.05)

        threads = [threading.Thread(target=cycle) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=20)
    assert len(peak) == 6
    assert max(peak) <= 2
    assert emu.live_allocations() == []


def test_a_lease_can_be_entered_only_once(
    emulator: Emulator, paths: Paths, client: harpoon.HostedAI
) -> None:
    lease = client.allocate(model="gemma-3-270m")
    with lease:
        pass
    with pytest.raises(harpoon.AllocationError, match="only once"), lease:
        pytest.fail("the block must not run")
    assert made(emulator) == 1
    assert emulator.live_allocations() == []


def test_release_inside_the_block_frees_the_gpus_at_once(
    emulator: Emulator, paths: Paths, client: harpoon.HostedAI
) -> None:
    with client.allocate(model="gemma-3-270m") as lease:
        renewed = lease.renew(ttl=300)
        assert renewed.ttl_seconds == (300 if paths == PATHS["v1"] else None)  # no TTL there
        lease.release()
        assert emulator.live_allocations() == []
        with pytest.raises(harpoon.AllocationError, match="released"):
            lease.infer("too late")
    assert len(emulator.requests_to(*paths.release)) == 1
