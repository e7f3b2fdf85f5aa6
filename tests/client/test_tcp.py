"""A representative subset over real TCP (``emu.serve()`` on 127.0.0.1): real sockets, real
timeouts, real dropped connections."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Iterator

import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, Fault, FaultPlan
from tests.client._support import API_KEY, AnyClient, Flavor, Waits, call, close, no_jitter, take
from tests.conftest import EmulatorFactory

MODEL = "gemma-3-270m"


@pytest.fixture
def served(emulator: Emulator) -> Iterator[tuple[Emulator, str]]:
    with emulator.serve() as base_url:
        yield emulator, base_url


@pytest.fixture
async def tcp_client(
    served: tuple[Emulator, str], flavor: Flavor
) -> AsyncIterator[tuple[Emulator, AnyClient]]:
    emu, base_url = served
    client: AnyClient
    if flavor == "sync":
        client = harpoon.HostedAI(base_url=base_url, api_key=API_KEY, retry=no_jitter())
    else:
        client = harpoon.AsyncHostedAI(base_url=base_url, api_key=API_KEY, retry=no_jitter())
    yield emu, client
    await close(client)


async def test_a_whole_allocation_lifecycle_over_tcp(
    tcp_client: tuple[Emulator, AnyClient],
) -> None:
    emu, client = tcp_client
    assert (await call(client, "health")).status == "ok"
    pools = await call(client, "list_pools")
    alloc = await call(client, "create_allocation", model=MODEL, pool_id=pools[0].id)
    assert (await call(client, "get_allocation", alloc.id)).id == alloc.id
    assert [a.id for a in await call(client, "list_allocations")] == [alloc.id]
    renewed = await call(client, "renew_allocation", alloc.id, ttl=1200)
    assert renewed.ttl_seconds == 1200
    result = await call(client, "infer", allocation_id=alloc.id, prompt="hello")
    chunks = await take(await call(client, "stream", allocation_id=alloc.id, prompt="hello"))
    assert "".join(c.delta for c in chunks) == result.text
    await call(client, "release_allocation", alloc.id)
    await call(client, "release_allocation", alloc.id)
    assert emu.live_allocations() == []
    assert all(
        e.request_headers["user-agent"].startswith("hostedai-harpoon/") for e in emu.exchanges
    )
    assert result.request_id == emu.requests_to("POST", "/v1/inference")[0].request_id


async def test_status_errors_map_to_their_classes_over_tcp(
    tcp_client: tuple[Emulator, AnyClient],
) -> None:
    emu, client = tcp_client
    with pytest.raises(harpoon.NotFoundError) as caught:
        await call(client, "get_pool", "nope")
    assert caught.value.request_id == emu.exchanges[-1].request_id
    with pytest.raises(harpoon.UnprocessableEntityError):
        await call(client, "create_allocation", model="no-such-model")
    assert len(emu.exchanges) == 2


async def test_a_drop_after_create_allocation_over_tcp_leaves_exactly_one_allocation(
    tcp_client: tuple[Emulator, AnyClient], waits: Waits
) -> None:
    emu, client = tcp_client
    emu.faults = FaultPlan(rules=[Fault("drop", path="/v1/allocate", when="after", times=1)])
    alloc = await call(client, "create_allocation", model=MODEL)
    first, second = emu.exchanges
    assert (first.status, second.status) == (None, 201)
    assert first.idempotency_key == second.idempotency_key
    assert [a.id for a in emu.live_allocations()] == [alloc.id]
    assert list(emu.created_by_key().values()) == [[alloc.id]]
    assert waits.seconds == [0.5]


async def test_inference_is_not_retried_after_a_drop_over_tcp(
    tcp_client: tuple[Emulator, AnyClient],
) -> None:
    emu, client = tcp_client
    alloc = await call(client, "create_allocation", model=MODEL)
    emu.faults = FaultPlan(rules=[Fault("drop", path="/v1/inference", when="after")])
    with pytest.raises(harpoon.APIConnectionError):
        await call(client, "infer", allocation_id=alloc.id, prompt="once")
    assert len(emu.requests_to("POST", "/v1/inference")) == 1


async def test_retry_after_is_honoured_over_tcp(
    tcp_client: tuple[Emulator, AnyClient], waits: Waits
) -> None:
    emu, client = tcp_client
    emu.faults = FaultPlan(rules=[Fault("rate_limit", retry_after=4, times=2)])
    await call(client, "list_pools")
    assert [e.status for e in emu.exchanges] == [429, 429, 200]
    assert waits.seconds == [4.0, 4.0]


async def test_a_real_read_timeout_is_retried_then_raised_over_tcp(
    tcp_client: tuple[Emulator, AnyClient],
) -> None:
    emu, client = tcp_client
    emu.faults = FaultPlan(rules=[Fault("latency", delay=0.3)])
    started = time.monotonic()
    with pytest.raises(harpoon.APITimeoutError):
        await call(client.with_options(timeout=0.05, max_retries=1), "health")
    assert time.monotonic() - started < 0.29
    assert len(emu.exchanges) == 2


async def test_the_deadline_bounds_a_call_over_tcp(
    tcp_client: tuple[Emulator, AnyClient],
) -> None:
    emu, client = tcp_client
    emu.faults = FaultPlan(rules=[Fault("latency", delay=0.3)])
    started = time.monotonic()
    with pytest.raises(harpoon.APITimeoutError):
        await call(client.with_options(timeout=30.0, deadline=0.1), "health")
    assert time.monotonic() - started < 0.29


async def test_stopping_a_stream_early_closes_the_connection_over_tcp(
    make_emulator: EmulatorFactory, flavor: Flavor
) -> None:
    emu = make_emulator(stream_chunk_delay=0.01)
    with emu.serve() as base_url:
        client: AnyClient
        if flavor == "sync":
            client = harpoon.HostedAI(base_url=base_url, api_key=API_KEY)
        else:
            client = harpoon.AsyncHostedAI(base_url=base_url, api_key=API_KEY)
        alloc = await call(client, "create_allocation", model="qwen3-30b-a3b")
        stream = await call(client, "stream", allocation_id=alloc.id, prompt="a long answer")
        assert len(await take(stream, limit=2)) == 2
        for _ in range(100):  # the server notices the closed socket within a few ms
            if emu.streams_aborted:
                break
            await asyncio.sleep(0.005)
        assert (emu.streams_aborted, emu.streams_completed, emu.open_streams) == (1, 0, 0)
        await close(client)


async def test_a_refused_connection_is_retried_then_raised(flavor: Flavor, waits: Waits) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    base_url = f"http://127.0.0.1:{port}"
    client: AnyClient
    if flavor == "sync":
        client = harpoon.HostedAI(base_url=base_url, api_key=API_KEY, retry=no_jitter())
    else:
        client = harpoon.AsyncHostedAI(base_url=base_url, api_key=API_KEY, retry=no_jitter())
    with pytest.raises(harpoon.APIConnectionError) as caught:
        await call(client, "infer", allocation_id="alloc_1", prompt="never sent")
    assert type(caught.value) is harpoon.APIConnectionError
    assert waits.seconds == [0.5, 1.0]  # never sent, so safe to retry even inference
    await close(client)


async def test_the_breaker_opens_end_to_end_over_tcp(
    served: tuple[Emulator, str], flavor: Flavor
) -> None:
    emu, base_url = served
    emu.faults = FaultPlan(rules=[Fault("error", status=500)])
    config = harpoon.CircuitBreakerConfig(minimum_calls=3)
    client: AnyClient
    if flavor == "sync":
        client = harpoon.HostedAI(
            base_url=base_url, api_key=API_KEY, max_retries=0, circuit_breaker=config
        )
    else:
        client = harpoon.AsyncHostedAI(
            base_url=base_url, api_key=API_KEY, max_retries=0, circuit_breaker=config
        )
    for _ in range(3):
        with pytest.raises(harpoon.InternalServerError):
            await call(client, "health")
    with pytest.raises(harpoon.CircuitOpenError):
        await call(client, "health")
    assert len(emu.exchanges) == 3
    await close(client)
