"""The per-attempt timeout and the optional deadline across all the attempts of one call."""

from __future__ import annotations

import time

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Fault, FaultPlan
from tests.client._support import (
    ClientFactory,
    Flavor,
    Waits,
    call,
    mock_async_client,
    mock_client,
    no_jitter,
)
from tests.conftest import EmulatorFactory


def slow() -> FaultPlan:
    return FaultPlan(rules=[Fault("latency", delay=5.0)])


async def test_each_attempt_times_out_after_the_per_attempt_timeout(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = make_emulator(faults=slow())
    client = make_client(emu, max_retries=0, timeout=0.05)
    started = time.monotonic()
    with pytest.raises(harpoon.APITimeoutError):
        await call(client, "health")
    assert 0.04 <= time.monotonic() - started < 1.0
    assert len(emu.exchanges) == 1


async def test_the_deadline_cuts_a_slow_attempt_short(
    make_emulator: EmulatorFactory, make_client: ClientFactory, waits: Waits
) -> None:
    emu = make_emulator(faults=slow())
    client = make_client(emu, timeout=30.0, deadline=0.1, retry=no_jitter(max_retries=5))
    started = time.monotonic()
    with pytest.raises(harpoon.APITimeoutError):
        await call(client, "health")
    assert time.monotonic() - started < 1.0
    assert len(emu.exchanges) == 1  # the 0.5 s backoff would have crossed the deadline
    assert waits.seconds == []


async def test_no_retry_starts_when_its_wait_would_cross_the_deadline(
    make_emulator: EmulatorFactory, make_client: ClientFactory, waits: Waits
) -> None:
    emu = make_emulator(faults=FaultPlan(rules=[Fault("error", status=503)]))
    policy = no_jitter(max_retries=10, initial_backoff=2.0, max_backoff=100.0)
    client = make_client(emu, deadline=10.0, retry=policy)
    with pytest.raises(harpoon.InternalServerError):
        await call(client, "health")
    # Waits of 2 and 4 fit in 10 s; the next one, 8, would end after the deadline.
    assert waits.seconds == [2.0, 4.0]
    assert len(emu.exchanges) == 3


async def test_a_retry_after_that_would_cross_the_deadline_ends_the_call(
    make_emulator: EmulatorFactory, make_client: ClientFactory, waits: Waits
) -> None:
    emu = make_emulator(faults=FaultPlan(rules=[Fault("rate_limit", retry_after=20)]))
    client = make_client(emu, deadline=15.0, retry=no_jitter(max_retries=3))
    with pytest.raises(harpoon.RateLimitError) as caught:
        await call(client, "health")
    assert caught.value.retry_after == 20.0
    assert len(emu.exchanges) == 1
    assert waits.seconds == []


async def test_without_a_deadline_the_same_retries_all_happen(
    make_emulator: EmulatorFactory, make_client: ClientFactory, waits: Waits
) -> None:
    emu = make_emulator(faults=FaultPlan(rules=[Fault("error", status=503)]))
    policy = no_jitter(max_retries=4, initial_backoff=2.0, max_backoff=100.0)
    client = make_client(emu, retry=policy)
    assert client.deadline is None
    with pytest.raises(harpoon.InternalServerError):
        await call(client, "health")
    assert waits.seconds == [2.0, 4.0, 8.0, 16.0]


async def test_each_attempt_gets_only_what_is_left_of_the_deadline(
    flavor: Flavor, waits: Waits
) -> None:
    timeouts: list[dict[str, float]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"])
        if len(timeouts) < 3:
            return httpx.Response(503)
        return httpx.Response(200, json={"status": "ok", "version": "1"})

    make = mock_client if flavor == "sync" else mock_async_client
    client = make(handler, timeout=httpx.Timeout(30.0, connect=2.0), deadline=10.0)
    client = client.with_options(retry=no_jitter(initial_backoff=1.0))
    await call(client, "health")
    assert waits.seconds == [1.0, 2.0]
    reads = [t["read"] for t in timeouts]
    assert reads == pytest.approx([10.0, 9.0, 7.0], abs=0.2)
    assert [t["connect"] for t in timeouts] == [2.0, 2.0, 2.0]


async def test_with_options_sets_a_deadline_on_the_copy_only(flavor: Flavor) -> None:
    timeouts: list[float] = []

    def handler(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"]["read"])
        return httpx.Response(200, json={"status": "ok", "version": "1"})

    make = mock_client if flavor == "sync" else mock_async_client
    client = make(handler, timeout=30.0)
    await call(client.with_options(deadline=4.0), "health")
    await call(client, "health")
    assert timeouts[0] == pytest.approx(4.0, abs=0.2)
    assert timeouts[1] == 30.0


async def test_a_deadline_spent_by_a_slow_attempt_leaves_no_time_for_a_retry(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = make_emulator(faults=FaultPlan(rules=[Fault("latency", delay=0.06, times=1)]))
    client = make_client(
        emu, deadline=0.05, retry=no_jitter(initial_backoff=0.0), circuit_breaker=None
    )
    with pytest.raises(harpoon.APITimeoutError):
        await call(client, "health")
    assert len(emu.exchanges) == 1
