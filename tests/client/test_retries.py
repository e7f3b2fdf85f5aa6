"""Which failures are retried, how many attempts go out, and how long the client waits."""

from __future__ import annotations

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, Fault, FaultPlan
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

MODEL = "gemma-3-270m"


def faulty(make_emulator: EmulatorFactory, *rules: Fault) -> Emulator:
    return make_emulator(faults=FaultPlan(rules=rules))


# Retried statuses


@pytest.mark.parametrize("status", [500, 502, 503, 504])
async def test_a_transient_5xx_is_retried_and_the_call_succeeds(
    make_emulator: EmulatorFactory, make_client: ClientFactory, waits: Waits, status: int
) -> None:
    emu = faulty(make_emulator, Fault("error", status=status, times=1))
    client = make_client(emu, retry=no_jitter())
    assert (await call(client, "health")).status == "ok"
    assert [e.status for e in emu.exchanges] == [status, 200]
    assert waits.seconds == [0.5]


async def test_a_persistent_5xx_gives_up_after_max_retries_plus_one_attempts(
    make_emulator: EmulatorFactory, make_client: ClientFactory, waits: Waits
) -> None:
    emu = faulty(make_emulator, Fault("error", status=502))
    client = make_client(emu, retry=no_jitter(max_retries=3))
    with pytest.raises(harpoon.InternalServerError):
        await call(client, "list_pools")
    assert len(emu.exchanges) == 4
    assert waits.seconds == [0.5, 1.0, 2.0]


async def test_the_default_client_makes_three_attempts(
    make_emulator: EmulatorFactory, make_client: ClientFactory, waits: Waits
) -> None:
    emu = faulty(make_emulator, Fault("error", status=500))
    client = make_client(emu)
    with pytest.raises(harpoon.InternalServerError):
        await call(client, "health")
    assert len(emu.exchanges) == 3
    assert len(waits.seconds) == 2


async def test_max_retries_zero_makes_exactly_one_attempt(
    make_emulator: EmulatorFactory, make_client: ClientFactory, waits: Waits
) -> None:
    emu = faulty(make_emulator, Fault("error", status=503))
    client = make_client(emu, max_retries=0)
    with pytest.raises(harpoon.InternalServerError):
        await call(client, "health")
    assert len(emu.exchanges) == 1
    assert waits.seconds == []


async def test_with_options_max_retries_changes_the_attempts_of_the_copy_only(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = faulty(make_emulator, Fault("error", status=503))
    client = make_client(emu, retry=no_jitter(max_retries=1))
    with pytest.raises(harpoon.InternalServerError):
        await call(client.with_options(max_retries=4), "health")
    assert len(emu.exchanges) == 5
    with pytest.raises(harpoon.InternalServerError):
        await call(client, "health")
    assert len(emu.exchanges) == 7


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
async def test_every_retryable_status_is_retried(flavor: Flavor, waits: Waits, status: int) -> None:
    statuses = [status, status, 200]

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(statuses.pop(0), json={"status": "ok", "version": "1"})

    make = mock_client if flavor == "sync" else mock_async_client
    client = make(handler, retry=no_jitter())
    assert (await call(client, "health")).status == "ok"
    assert statuses == []
    assert waits.seconds == [0.5, 1.0]


@pytest.mark.parametrize("status", [400, 401, 403, 404, 405, 409, 410, 418, 422])
async def test_other_4xx_are_never_retried(flavor: Flavor, waits: Waits, status: int) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(status, json={"error": {"code": "x", "message": "no"}})

    make = mock_client if flavor == "sync" else mock_async_client
    client = make(handler, max_retries=5)
    with pytest.raises(harpoon.APIStatusError) as caught:
        await call(client, "health")
    assert caught.value.status_code == status
    assert len(seen) == 1
    assert waits.seconds == []


async def test_a_not_found_allocation_is_asked_for_once(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(emulator, max_retries=5)
    with pytest.raises(harpoon.NotFoundError):
        await call(client, "get_allocation", "alloc_000000000000000000000000")
    assert len(emulator.exchanges) == 1


async def test_a_conflict_on_inference_is_not_retried(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = make_emulator(ready_delay=60)
    client = make_client(emu, max_retries=5)
    alloc = await call(client, "create_allocation", model=MODEL)
    with pytest.raises(harpoon.ConflictError):
        await call(client, "infer", allocation_id=alloc.id, prompt="hi")
    assert [e.path for e in emu.exchanges] == ["/v1/allocate", "/v1/inference"]


# Backoff


async def test_backoff_doubles_up_to_its_cap(
    make_emulator: EmulatorFactory, make_client: ClientFactory, waits: Waits
) -> None:
    emu = faulty(make_emulator, Fault("error", status=500))
    policy = no_jitter(max_retries=6, initial_backoff=0.25, max_backoff=1.5)
    client = make_client(emu, retry=policy)
    with pytest.raises(harpoon.InternalServerError):
        await call(client, "health")
    assert waits.seconds == [0.25, 0.5, 1.0, 1.5, 1.5, 1.5]
    assert len(emu.exchanges) == 7


async def test_jitter_draws_each_wait_between_zero_and_the_backoff(
    make_emulator: EmulatorFactory, make_client: ClientFactory, waits: Waits
) -> None:
    emu = faulty(make_emulator, Fault("error", status=500))
    policy = harpoon.RetryPolicy(max_retries=8, initial_backoff=1.0, max_backoff=4.0)
    client = make_client(emu, retry=policy)
    with pytest.raises(harpoon.InternalServerError):
        await call(client, "health")
    caps = [1.0, 2.0, 4.0, 4.0, 4.0, 4.0, 4.0, 4.0]
    assert len(waits.seconds) == len(caps)
    assert all(0.0 <= wait <= cap for wait, cap in zip(waits.seconds, caps, strict=True))
    assert waits.seconds != caps


# Retry-After


async def test_retry_after_in_seconds_is_waited_exactly(
    make_emulator: EmulatorFactory, make_client: ClientFactory, waits: Waits
) -> None:
    emu = faulty(make_emulator, Fault("rate_limit", retry_after=3, times=1))
    client = make_client(emu, retry=no_jitter())
    await call(client, "list_pools")
    assert [e.status for e in emu.exchanges] == [429, 200]
    assert waits.seconds == [3.0]


async def test_retry_after_as_an_http_date_is_waited_until_that_date(
    make_emulator: EmulatorFactory, make_client: ClientFactory, waits: Waits
) -> None:
    emu = faulty(
        make_emulator, Fault("rate_limit", retry_after=5, retry_after_http_date=True, times=1)
    )
    client = make_client(emu, retry=no_jitter())
    await call(client, "list_pools")
    assert [e.status for e in emu.exchanges] == [429, 200]
    assert "GMT" in emu.exchanges[0].response_headers["retry-after"]
    # An HTTP-date has whole seconds: the wait is the 5 s less the part of a second gone.
    assert len(waits.seconds) == 1
    assert 3.9 < waits.seconds[0] <= 5.0


async def test_a_capacity_error_is_retried_after_its_retry_after(
    make_emulator: EmulatorFactory, make_client: ClientFactory, waits: Waits
) -> None:
    emu = make_emulator(capacity_retry_after=2)
    client = make_client(emu, retry=no_jitter())
    await call(client, "create_allocation", model=MODEL, gpus=8)
    with pytest.raises(harpoon.CapacityError):
        await call(client, "create_allocation", model=MODEL)
    assert [e.status for e in emu.exchanges] == [201, 503, 503, 503]
    assert waits.seconds == [2.0, 2.0]


async def test_a_retry_after_beyond_the_cap_raises_rate_limit_error_at_once(
    make_emulator: EmulatorFactory, make_client: ClientFactory, waits: Waits
) -> None:
    emu = faulty(make_emulator, Fault("rate_limit", retry_after=61))
    client = make_client(emu, retry=no_jitter(max_retries=5))
    with pytest.raises(harpoon.RateLimitError) as caught:
        await call(client, "health")
    assert caught.value.retry_after == 61.0
    assert len(emu.exchanges) == 1
    assert waits.seconds == []


async def test_a_retry_after_at_the_cap_is_still_honoured(
    make_emulator: EmulatorFactory, make_client: ClientFactory, waits: Waits
) -> None:
    emu = faulty(make_emulator, Fault("rate_limit", retry_after=10, times=1))
    client = make_client(emu, retry=no_jitter(max_retry_after=10))
    await call(client, "health")
    assert waits.seconds == [10.0]


async def test_a_long_capacity_retry_after_raises_capacity_error_at_once(
    make_emulator: EmulatorFactory, make_client: ClientFactory, waits: Waits
) -> None:
    emu = make_emulator(capacity_retry_after=30)
    client = make_client(emu, retry=no_jitter(max_retry_after=20))
    await call(client, "create_allocation", model=MODEL, gpus=8)
    with pytest.raises(harpoon.CapacityError) as caught:
        await call(client, "create_allocation", model=MODEL)
    assert caught.value.retry_after == 30.0
    assert len(emu.exchanges) == 2
    assert waits.seconds == []


async def test_an_unreadable_retry_after_falls_back_to_backoff(
    make_emulator: EmulatorFactory, make_client: ClientFactory, waits: Waits
) -> None:
    emu = faulty(make_emulator, Fault("rate_limit", retry_after="soon-ish", times=1))
    client = make_client(emu, retry=no_jitter())
    await call(client, "health")
    assert waits.seconds == [0.5]


# Transport failures


async def test_a_connection_dropped_before_processing_is_retried_for_a_read(
    make_emulator: EmulatorFactory, make_client: ClientFactory, waits: Waits
) -> None:
    emu = faulty(make_emulator, Fault("drop", times=2))
    client = make_client(emu, retry=no_jitter())
    await call(client, "list_pools")
    assert [e.status for e in emu.exchanges] == [None, None, 200]
    assert waits.seconds == [0.5, 1.0]


async def test_a_read_timeout_is_retried_for_a_read(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = faulty(make_emulator, Fault("latency", delay=5.0, times=1))
    client = make_client(emu, retry=no_jitter(), timeout=0.02)
    await call(client, "health")
    assert [e.fault for e in emu.exchanges] == ["latency", None]


async def test_a_read_timeout_on_every_attempt_raises_timeout_error(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = faulty(make_emulator, Fault("latency", delay=5.0))
    client = make_client(emu, retry=no_jitter(max_retries=1), timeout=0.02)
    with pytest.raises(harpoon.APITimeoutError):
        await call(client, "health")
    assert len(emu.exchanges) == 2


async def test_inference_is_not_retried_after_a_dropped_connection(
    make_emulator: EmulatorFactory, make_client: ClientFactory, waits: Waits
) -> None:
    emu = make_emulator()
    client = make_client(emu, max_retries=3)
    alloc = await call(client, "create_allocation", model=MODEL)
    emu.faults = FaultPlan(rules=[Fault("drop", path="/v1/inference", when="after")])
    with pytest.raises(harpoon.APIConnectionError):
        await call(client, "infer", allocation_id=alloc.id, prompt="bill me once")
    assert len(emu.requests_to("POST", "/v1/inference")) == 1
    assert waits.seconds == []


async def test_inference_is_not_retried_after_a_read_timeout(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = make_emulator()
    client = make_client(emu, max_retries=3, timeout=0.02)
    alloc = await call(client, "create_allocation", model=MODEL)
    emu.faults = FaultPlan(rules=[Fault("latency", path="/v1/inference", delay=5.0)])
    with pytest.raises(harpoon.APITimeoutError):
        await call(client, "infer", allocation_id=alloc.id, prompt="bill me once")
    assert len(emu.requests_to("POST", "/v1/inference")) == 1


async def test_inference_is_retried_when_the_server_answered_with_a_5xx(
    make_emulator: EmulatorFactory, make_client: ClientFactory, waits: Waits
) -> None:
    emu = make_emulator()
    client = make_client(emu, retry=no_jitter())
    alloc = await call(client, "create_allocation", model=MODEL)
    emu.faults = FaultPlan(rules=[Fault("error", status=503, path="/v1/inference", times=1)])
    result = await call(client, "infer", allocation_id=alloc.id, prompt="hi")
    assert result.allocation_id == alloc.id
    assert [e.status for e in emu.requests_to("POST", "/v1/inference")] == [503, 200]
    assert waits.seconds == [0.5]


@pytest.mark.parametrize("status", [500, 502, 504])
async def test_inference_is_not_retried_after_a_5xx_that_may_have_run_it(
    make_emulator: EmulatorFactory, make_client: ClientFactory, waits: Waits, status: int
) -> None:
    emu = make_emulator()
    client = make_client(emu, retry=no_jitter())
    alloc = await call(client, "create_allocation", model=MODEL)
    emu.faults = FaultPlan(
        rules=[Fault("error", status=status, path="/v1/inference", times=1, when="after")]
    )
    with pytest.raises(harpoon.InternalServerError):
        await call(client, "infer", allocation_id=alloc.id, prompt="bill me once")
    assert [e.status for e in emu.requests_to("POST", "/v1/inference")] == [status]


@pytest.mark.parametrize(
    "error", [httpx.ConnectError("refused"), httpx.ConnectTimeout("slow"), httpx.PoolTimeout("x")]
)
async def test_inference_is_retried_when_the_request_never_left(
    flavor: Flavor, waits: Waits, error: httpx.TransportError
) -> None:
    attempts: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        raise error

    make = mock_client if flavor == "sync" else mock_async_client
    client = make(handler, retry=no_jitter())
    with pytest.raises(harpoon.APIConnectionError):
        await call(client, "infer", allocation_id="alloc_1", prompt="hi")
    assert len(attempts) == 3
    assert waits.seconds == [0.5, 1.0]


@pytest.mark.parametrize(
    "error", [httpx.ReadError("reset"), httpx.RemoteProtocolError("eof"), httpx.WriteError("x")]
)
async def test_inference_is_not_retried_when_the_request_may_have_arrived(
    flavor: Flavor, waits: Waits, error: httpx.TransportError
) -> None:
    attempts: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        raise error

    make = mock_client if flavor == "sync" else mock_async_client
    client = make(handler, max_retries=4)
    with pytest.raises(harpoon.APIConnectionError):
        await call(client, "infer", allocation_id="alloc_1", prompt="hi")
    assert len(attempts) == 1
    with pytest.raises(harpoon.APIConnectionError):
        await call(client, "health")
    assert len(attempts) == 6


# One allocation, however many attempts


async def test_a_drop_after_create_allocation_is_retried_and_leaves_exactly_one_allocation(
    make_emulator: EmulatorFactory, make_client: ClientFactory, waits: Waits
) -> None:
    emu = faulty(make_emulator, Fault("drop", path="/v1/allocate", when="after", times=1))
    client = make_client(emu, retry=no_jitter())
    alloc = await call(client, "create_allocation", model=MODEL)
    first, second = emu.exchanges
    assert (first.status, first.fault, second.status) == (None, "drop", 201)
    assert first.allocation_id == alloc.id  # the lost answer had created it
    assert first.idempotency_key == second.idempotency_key is not None
    assert second.response_headers.get("idempotent-replayed") == "true"
    assert [a.id for a in emu.live_allocations()] == [alloc.id]
    assert emu.created_by_key() == {first.idempotency_key: [alloc.id]}
    assert waits.seconds == [0.5]


async def test_a_timeout_after_create_allocation_is_retried_and_leaves_exactly_one_allocation(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = faulty(make_emulator, Fault("latency", path="/v1/allocate", delay=5.0, times=1))
    client = make_client(emu, retry=no_jitter(), timeout=0.02)
    alloc = await call(client, "create_allocation", model=MODEL)
    assert len(emu.exchanges) == 2
    assert len({e.idempotency_key for e in emu.exchanges}) == 1
    assert [a.id for a in emu.live_allocations()] == [alloc.id]


async def test_every_attempt_carries_the_callers_idempotency_key(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = faulty(make_emulator, Fault("error", status=500, path="/v1/allocate", times=2))
    client = make_client(emu, retry=no_jitter())
    alloc = await call(client, "create_allocation", model=MODEL, idempotency_key="mine-1")
    assert [e.idempotency_key for e in emu.exchanges] == ["mine-1"] * 3
    assert emu.created_by_key() == {"mine-1": [alloc.id]}


async def test_a_drop_after_release_is_retried_and_the_release_still_succeeds(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(emulator, retry=no_jitter())
    alloc = await call(client, "create_allocation", model=MODEL)
    emulator.faults = FaultPlan(rules=[Fault("drop", method="DELETE", when="after", times=1)])
    await call(client, "release_allocation", alloc.id)
    assert [e.status for e in emulator.requests_to("DELETE")] == [None, 204]
    assert emulator.live_allocations() == []
