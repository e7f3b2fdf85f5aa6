"""The breaker and the in-process transports under load: what counts as a host failure,
what the breaker says when it refuses, and memory that must not grow with the calls."""

from __future__ import annotations

import asyncio
import socket
import tracemalloc
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, FaultPlan, GpuaasQuirks
from tests.dialects import TEAM

API_KEY = "sk-hostile-secret-key"
MODEL = "gemma-3-270m"
CALLS = 30


def _dialect_of(on: dict[str, Any]) -> dict[str, Any]:
    """The emulator's side of ``on``."""
    return {"dialect": on.get("dialect", "v1")}


class Clock:
    """A hand-moved clock for a breaker."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def on(dialect: str, tmp_path: Path) -> dict[str, Any]:
    """What a client needs to speak ``dialect`` (on ``gpuaas``, ``health`` lists the pools)."""
    if dialect == "v1":
        return {}
    return {"dialect": "gpuaas", "team_id": TEAM, "ledger_dir": tmp_path}


def pool_bound_options() -> dict[str, Any]:
    # Each answer takes 50 ms and only two can be in flight, so most calls find no free
    # connection within 10 ms: httpx raises PoolTimeout before anything is sent.
    return {
        "api_key": API_KEY,
        "timeout": httpx.Timeout(5.0, pool=0.01),
        "retry": harpoon.RetryPolicy(max_retries=3, initial_backoff=0.001, max_backoff=0.005),
    }


def check_pool_outcomes(results: list[object], breaker: harpoon.CircuitBreaker | None) -> None:
    assert not [r for r in results if isinstance(r, harpoon.CircuitOpenError)]
    assert breaker is not None
    assert breaker.state is harpoon.CircuitState.CLOSED
    # The premise: the local pool really ran dry, and the host answered the calls it got.
    assert any(
        isinstance(r, harpoon.APITimeoutError) and isinstance(r.__cause__, httpx.PoolTimeout)
        for r in results
    ), results
    assert any(isinstance(r, harpoon.Health) for r in results)


async def test_async_pool_exhaustion_is_not_a_host_failure(on: dict[str, Any]) -> None:
    emu = Emulator(faults=FaultPlan(latency_rate=1.0, latency=0.05), **_dialect_of(on))
    with emu.serve() as url:
        http = httpx.AsyncClient(limits=httpx.Limits(max_connections=2))
        async with (
            http,
            harpoon.AsyncHostedAI(url, http_client=http, **pool_bound_options(), **on) as client,
        ):
            results = await asyncio.gather(
                *(client.health() for _ in range(CALLS)), return_exceptions=True
            )
            check_pool_outcomes(list(results), client.circuit_breaker)


def test_sync_pool_exhaustion_is_not_a_host_failure(on: dict[str, Any]) -> None:
    emu = Emulator(faults=FaultPlan(latency_rate=1.0, latency=0.05), **_dialect_of(on))
    with emu.serve() as url:
        http = httpx.Client(limits=httpx.Limits(max_connections=2))
        options = {**pool_bound_options(), **on}
        with http, harpoon.HostedAI(url, http_client=http, **options) as client:

            def one() -> object:
                try:
                    return client.health()
                except harpoon.HostedAIError as exc:
                    return exc

            with ThreadPoolExecutor(CALLS) as threads:
                results = list(threads.map(lambda _: one(), range(CALLS)))
            check_pool_outcomes(results, client.circuit_breaker)


def test_the_breaker_window_does_not_grow_with_the_calls() -> None:
    clock = Clock()
    config = harpoon.CircuitBreakerConfig(window=30.0, minimum_calls=10**9)
    breaker = harpoon.CircuitBreaker(config, clock=clock)

    def calls(count: int) -> None:
        for number in range(count):
            clock.now += 0.0001  # all of them inside one window
            breaker.record(breaker.acquire(), number % 3 != 0)

    calls(1000)
    tracemalloc.start()
    try:
        before = tracemalloc.take_snapshot()
        calls(50_000)
        after = tracemalloc.take_snapshot()
    finally:
        tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert grown < 16 * 1024, f"the breaker grew by {grown} bytes over 50,000 calls"


async def test_finished_async_leases_leave_no_tasks_behind_in_a_tight_loop(
    on: dict[str, Any],
) -> None:
    emu = Emulator(**_dialect_of(on))
    http = emu.async_http_client()
    async with (
        http,
        harpoon.AsyncHostedAI("http://127.0.0.1:8080", API_KEY, http_client=http, **on) as client,
    ):
        for _ in range(200):
            async with client.allocate(model=MODEL, ttl=60) as lease:
                await lease.infer("hello", max_tokens=2)
        # Each lease cancels its keepalive task on release; the in-process transport must
        # give the loop a turn so that those tasks end instead of piling up.
        left = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        assert len(left) <= 1, f"{len(left)} tasks still pending"
        plane = client._gpuaas
        if plane is not None:  # nor does the platform's bookkeeping grow with the leases
            assert plane.held == {}
            assert plane.in_flight == {}
            assert plane.ledger.snapshot() == {"owned": {}, "pending": {}}
        assert emu.live_allocations() == []


def test_an_open_breaker_says_when_it_probes_and_how_to_turn_it_off() -> None:
    clock = Clock()
    config = harpoon.CircuitBreakerConfig(minimum_calls=1, open_duration=15.0)
    breaker = harpoon.CircuitBreaker(config, clock=clock, name="api.test")
    breaker.record(breaker.acquire(), False)
    clock.now += 5.0
    with pytest.raises(harpoon.CircuitOpenError) as caught:
        breaker.acquire()
    message = str(caught.value)
    assert "in 10.0s" in message
    assert "circuit_breaker=None" in message


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


async def health(flavor: str, url: str, **on: Any) -> None:
    if flavor == "sync":
        with harpoon.HostedAI(url, API_KEY, max_retries=0, **on) as client:
            client.health()
    else:
        async with harpoon.AsyncHostedAI(url, API_KEY, max_retries=0, **on) as aclient:
            await aclient.health()


@pytest.mark.parametrize("flavor", ["sync", "async"])
async def test_a_connection_error_names_the_host_and_not_the_key(
    on: dict[str, Any], flavor: str
) -> None:
    port = free_port()  # nothing listens there: the connection is refused
    url = f"http://127.0.0.1:{port}"
    with pytest.raises(harpoon.APIConnectionError) as caught:
        await health(flavor, url, **on)
    message = str(caught.value)
    assert f"could not connect to 127.0.0.1:{port}" in message
    assert API_KEY not in message
    assert API_KEY not in repr(caught.value)


def test_the_platforms_errors_answered_as_200_open_the_breaker_like_500s(tmp_path: Path) -> None:
    emu = Emulator(dialect="gpuaas", gpuaas=GpuaasQuirks(policy_error_200_rate=1.0))
    config = harpoon.CircuitBreakerConfig(minimum_calls=3, failure_rate_threshold=0.5)
    options: dict[str, Any] = {"dialect": "gpuaas", "team_id": TEAM, "ledger_dir": tmp_path}
    http = emu.http_client()
    with harpoon.HostedAI(
        "http://127.0.0.1:8080", API_KEY, http_client=http, max_retries=0, circuit_breaker=config,
        **options,
    ) as client:  # fmt: skip
        for _ in range(3):
            with pytest.raises(harpoon.InternalServerError, match="answered as HTTP 200"):
                client.list_pools()
        sent = len(emu.exchanges)
        for _ in range(20):
            with pytest.raises(harpoon.CircuitOpenError):
                client.list_pools()
        assert len(emu.exchanges) == sent == 3  # refused without sending
