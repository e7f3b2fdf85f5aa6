"""Regressions from the attack on leases and orphans (hardening issue, items 1-3, 10, 13)."""

from __future__ import annotations

import asyncio
import socket
import time

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon import CircuitBreakerConfig
from hostedai_harpoon.testing import Emulator, Fault, FaultPlan
from tests.leases.conftest import BASE_URL, async_client, sync_client

# Opens on the first failure and stays open for the whole test.
TRIGGER_HAPPY = CircuitBreakerConfig(minimum_calls=1, failure_rate_threshold=0.5, open_duration=60)

# The create reaches the server (an allocation is made) but its answer never comes back.
LOST_CREATE_ANSWER = FaultPlan(
    rules=[Fault("drop", method="POST", path="/v1/allocate", when="after", times=1)]
)


# 1. The breaker opening between two attempts of a create ------------------------------------


def test_a_breaker_opening_after_a_lost_create_answer_leaks_nothing(waits: list[float]) -> None:
    emu = Emulator(faults=LOST_CREATE_ANSWER)
    with sync_client(emu, circuit_breaker=TRIGGER_HAPPY) as client:
        with (
            pytest.raises(harpoon.APIConnectionError) as raised,
            client.allocate(model="gemma-3-270m"),
        ):
            pass
        assert any("not retried" in note for note in raised.value.__notes__)
        assert emu.live_allocations() == []
        assert client.orphans() == []


async def test_an_async_breaker_opening_after_a_lost_create_answer_leaks_nothing(
    waits: list[float],
) -> None:
    emu = Emulator(faults=LOST_CREATE_ANSWER)
    async with async_client(emu, circuit_breaker=TRIGGER_HAPPY) as client:
        with pytest.raises(harpoon.APIConnectionError):
            async with client.allocate(model="gemma-3-270m"):
                pass
        assert emu.live_allocations() == []
        assert client.orphans() == []


def test_a_breaker_already_open_refuses_the_create_and_records_nothing(
    waits: list[float],
) -> None:
    emu = Emulator()
    with sync_client(emu, circuit_breaker=TRIGGER_HAPPY) as client:
        breaker = client.circuit_breaker
        assert breaker is not None
        breaker.record(breaker.acquire(), False)  # open it: nothing will be sent
        with pytest.raises(harpoon.CircuitOpenError), client.allocate(model="gemma-3-270m"):
            pass
        assert emu.requests_to("POST", "/v1/allocate") == []
        assert client.orphans() == []


# 2. release_orphans() keeps what it did not release --------------------------------------


def _orphan(allocation_id: str) -> harpoon.OrphanedAllocation:
    return harpoon.OrphanedAllocation(
        allocation_id=allocation_id, idempotency_key=f"key-{allocation_id}", model="m", error="x"
    )


async def test_cancelling_release_orphans_loses_no_orphan(waits: list[float]) -> None:
    emu = Emulator(faults=FaultPlan(rules=[Fault("latency", method="DELETE", delay=30.0)]))
    async with async_client(emu) as client:
        allocations = [await client.create_allocation("gemma-3-270m") for _ in range(3)]
        for allocation in allocations:
            client._orphans.add(_orphan(allocation.id))
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(client.release_orphans(), 0.2)
        assert [o.allocation_id for o in client.orphans()] == [a.id for a in allocations]


def test_an_unexpected_error_in_release_orphans_loses_no_orphan() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("a bug somewhere below")

    http = httpx.Client(transport=httpx.MockTransport(handler))
    with harpoon.HostedAI(BASE_URL, "sk", http_client=http) as client:
        client._orphans.add(_orphan("alloc-a"))
        client._orphans.add(_orphan("alloc-b"))
        with pytest.raises(RuntimeError):
            client.release_orphans()
        assert [o.allocation_id for o in client.orphans()] == ["alloc-a", "alloc-b"]


def test_a_released_orphan_leaves_the_ledger_and_a_failing_one_stays(
    waits: list[float],
) -> None:
    emu = Emulator(faults=FaultPlan(rules=[Fault("error", method="DELETE", path="/v1/allocate/*")]))
    with sync_client(emu) as client:
        allocation = client.create_allocation("gemma-3-270m")
        client._orphans.add(_orphan(allocation.id))
        assert [o.allocation_id for o in client.release_orphans()] == [allocation.id]
        assert [o.allocation_id for o in client.orphans()] == [allocation.id]
    with sync_client(Emulator()) as healthy:
        healthy._orphans.add(_orphan("alloc-unknown"))  # 404: nothing left to release
        assert healthy.release_orphans() == []
        assert healthy.orphans() == []


# 3. No fake orphans -----------------------------------------------------------------------


@pytest.fixture
def keyed_emulator() -> Emulator:
    return Emulator(api_keys=["sk-right"])


def test_a_wrong_key_inside_allocate_records_no_orphan(
    keyed_emulator: Emulator, waits: list[float]
) -> None:
    http = keyed_emulator.http_client()
    with harpoon.HostedAI(BASE_URL, "sk-wrong", http_client=http) as client:
        with pytest.raises(harpoon.AuthenticationError), client.allocate(model="gemma-3-270m"):
            pass
        assert client.orphans() == []
        assert client.release_orphans() == []


@pytest.mark.parametrize("status", [400, 401, 403, 404, 422])
def test_a_definite_4xx_on_create_means_nothing_was_made(status: int) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json={"error": {"type": "t", "code": "c", "message": "no"}})

    http = httpx.Client(transport=httpx.MockTransport(handler))
    with harpoon.HostedAI(BASE_URL, "sk", http_client=http) as client:
        with pytest.raises(harpoon.APIStatusError), client.allocate(model="gemma-3-270m"):
            pass
        assert client.orphans() == []


@pytest.mark.v1_only("idempotency keys are v1's; a subscribe takes none")
@pytest.mark.parametrize("key", [123, b"bytes", "", "k" * 256, "naïve", "line\nbreak"])
def test_a_bad_idempotency_key_is_refused_before_anything_is_sent(
    emulator: Emulator, key: object
) -> None:
    with sync_client(emulator) as client:
        with pytest.raises(harpoon.ConfigurationError, match="idempotency_key"):
            client.allocate(model="gemma-3-270m", idempotency_key=key)  # type: ignore[arg-type]
        with pytest.raises(harpoon.ConfigurationError, match="idempotency_key"):
            client.create_allocation("gemma-3-270m", idempotency_key=key)  # type: ignore[arg-type]
        assert client.orphans() == []
    assert emulator.exchanges == []


# 10. Durations that would harm ------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("renew_interval", 0),
        ("renew_interval", 0.001),
        ("renew_interval", 1e10),
        ("renew_interval", float("nan")),
        ("ready_timeout", 1e10),
        ("capacity_timeout", float("inf")),
        ("release_timeout", 0),
        ("release_timeout", 1e10),
    ],
)
def test_harmful_durations_are_refused_when_the_lease_is_made(
    emulator: Emulator, option: str, value: float
) -> None:
    with sync_client(emulator) as client, pytest.raises(harpoon.ConfigurationError, match=option):
        client.allocate(model="gemma-3-270m", **{option: value})  # type: ignore[arg-type]
    assert emulator.exchanges == []


# 13. Misuse names the fix -----------------------------------------------------------------


def test_a_lease_used_without_with_says_to_use_with(client: harpoon.HostedAI) -> None:
    lease = client.allocate(model="gemma-3-270m")
    with pytest.raises(harpoon.UsageError, match=r"with client\.allocate"):
        lease.infer("hello")


async def test_an_async_lease_used_without_async_with_says_so(
    aclient: harpoon.AsyncHostedAI,
) -> None:
    lease = aclient.allocate(model="gemma-3-270m")
    with pytest.raises(harpoon.UsageError, match=r"async with client\.allocate"):
        await lease.infer("hello")


async def test_leases_of_the_wrong_flavour_name_the_fix(
    emulator: Emulator, client: harpoon.HostedAI, aclient: harpoon.AsyncHostedAI
) -> None:
    with (
        pytest.raises(harpoon.UsageError, match="async client"),
        aclient.allocate(model="gemma-3-270m"),
    ):
        pass
    with pytest.raises(harpoon.UsageError, match="not awaited"):
        await aclient.allocate(model="gemma-3-270m")
    with pytest.raises(harpoon.UsageError, match="sync client"):
        async with client.allocate(model="gemma-3-270m"):
            pass
    with pytest.raises(harpoon.UsageError, match="not awaited"):
        await client.allocate(model="gemma-3-270m")
    assert emulator.exchanges == []


# A server that cannot be reached ---------------------------------------------------------


def _refused_port() -> int:
    """A port on 127.0.0.1 nobody listens on (bound, then closed)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.mark.parametrize("deadline", [None, 5.0], ids=["no-deadline", "deadline"])
def test_an_unreachable_server_is_a_connection_error_and_no_orphan(
    waits: list[float], deadline: float | None
) -> None:
    url = f"http://127.0.0.1:{_refused_port()}"
    with harpoon.HostedAI(url, "sk", deadline=deadline) as client:
        with pytest.raises(harpoon.APIConnectionError), client.allocate(model="gemma-3-270m"):
            pass
        with pytest.raises(harpoon.APIConnectionError):
            client.health()
        assert client.orphans() == []  # no attempt connected: nothing can have been made


async def test_an_unreachable_server_leaves_no_async_orphan(waits: list[float]) -> None:
    async with harpoon.AsyncHostedAI(f"http://127.0.0.1:{_refused_port()}", "sk") as client:
        with pytest.raises(harpoon.APIConnectionError):
            async with client.allocate(model="gemma-3-270m"):
                pass
        assert client.orphans() == []


def test_a_create_cut_by_the_deadline_is_replayed_and_released(waits: list[float]) -> None:
    # The create is answered only after the deadline: it may have been made, so it is found
    # again by its key and released, not forgotten.
    emu = Emulator(faults=FaultPlan(rules=[Fault("latency", method="POST", delay=1.0, times=1)]))
    with emu.serve() as url, harpoon.HostedAI(url, "sk", deadline=0.3, max_retries=0) as client:
        with pytest.raises(harpoon.APITimeoutError), client.allocate(model="gemma-3-270m"):
            pass
        time.sleep(1.0)  # let the slow answer come too: the allocation is still released
        assert emu.live_allocations() == []
        assert client.orphans() == []
        assert len(emu.created_by_key()) == 1


def test_an_orphan_whose_id_never_arrived_is_named_by_its_idempotency_key(
    waits: list[float], caplog: pytest.LogCaptureFixture
) -> None:
    # Every create is made but its answer lost, the replay's too: the id is never known.
    emu = Emulator(
        faults=FaultPlan(rules=[Fault("drop", method="POST", path="/v1/allocate", when="after")])
    )
    with sync_client(emu, circuit_breaker=None) as client:
        with (
            pytest.raises(harpoon.APIConnectionError) as raised,
            client.allocate(model="gemma-3-270m", idempotency_key="orphan-key-42"),
        ):
            pass
        [orphan] = client.orphans()
        assert orphan.allocation_id is None
        notes = " ".join(getattr(raised.value, "__notes__", ()))
        for text in (caplog.text, notes):
            assert "could not release the allocation created with idempotency key " in text
            assert "orphan-key-42" in text
            assert "None" not in text
