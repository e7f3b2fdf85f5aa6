"""One way to say each thing: the same idea is spelt the same way on every object."""

from __future__ import annotations

import inspect
from typing import Any

import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator


@pytest.mark.parametrize(
    "cls",
    [
        harpoon.AsyncHostedAI,
        harpoon.AsyncEndpoint,
        harpoon.AsyncLease,
        harpoon.AsyncInferenceStream,
        harpoon.Orchestrator,
        harpoon.Session,
    ],
)
def test_every_async_resource_closes_with_aclose_and_close_alike(cls: Any) -> None:
    assert cls.aclose is cls.close  # httpx's and anyio's name, and openai-python's


async def test_aclose_closes_the_async_clients_own_connection_pool() -> None:
    with Emulator().serve() as base_url:
        client = harpoon.AsyncHostedAI(base_url, "sk")
        assert (await client.health()).status == "ok"
        await client.aclose()
        with pytest.raises(harpoon.UsageError, match="client is closed"):
            await client.health()


async def test_stream_sends_nothing_until_entered_on_every_twin() -> None:
    emu = Emulator()
    sync = harpoon.HostedAI("http://127.0.0.1:8080", "sk", http_client=emu.http_client())
    aio = harpoon.AsyncHostedAI("http://127.0.0.1:8080", "sk", http_client=emu.async_http_client())
    allocation = sync.create_allocation("gemma-3-270m")
    with sync.allocate("gemma-3-270m") as lease:
        async with aio.allocate("gemma-3-270m") as alease:
            streams = [sync.stream(allocation.id, "hi"), lease.stream("hi")]
            astreams = [aio.stream(allocation.id, "hi"), alease.stream("hi")]
            assert emu.requests_to("POST", "/v1/inference") == []  # as httpx's stream()
            for stream in streams:
                with stream as chunks:
                    assert [chunk.delta for chunk in chunks]
            for astream in astreams:
                async with astream as achunks:
                    assert [chunk.delta async for chunk in achunks]
    assert len(emu.requests_to("POST", "/v1/inference")) == 4
    sync.release_allocation(allocation.id)
    assert emu.live_allocations() == []


def test_the_orchestrator_takes_the_clients_names_and_the_old_ones_with_a_warning() -> None:
    client = harpoon.AsyncHostedAI("http://127.0.0.1:8080", "sk")
    config = harpoon.CircuitBreakerConfig(minimum_calls=2)
    parameters = inspect.signature(harpoon.Orchestrator).parameters
    assert {"circuit_breaker", "ttl"} <= set(parameters)
    orch = harpoon.Orchestrator(client, circuit_breaker=config, ttl=30.0)
    assert orch._lease_options["ttl"] == 30.0
    with pytest.warns(DeprecationWarning, match=r"breaker=\.\.\.\) is now circuit_breaker="):
        harpoon.Orchestrator(client, breaker=config)
    with pytest.warns(DeprecationWarning, match=r"lease_ttl=\.\.\.\) is now ttl="):
        old = harpoon.Orchestrator(client, lease_ttl=30.0)
    assert old._lease_options["ttl"] == 30.0
    with (
        pytest.warns(DeprecationWarning, match="lease_ttl"),
        pytest.raises(harpoon.ConfigurationError),
    ):
        harpoon.Orchestrator(client, ttl=10.0, lease_ttl=30.0)
    with pytest.raises(harpoon.UsageError, match="unexpected keyword argument 'lease_tll'"):
        harpoon.Orchestrator(client, lease_tll=30.0)  # type: ignore[call-arg]


def test_max_tokens_defaults_to_none_on_every_call_that_takes_it() -> None:
    calls: list[Any] = [
        harpoon.HostedAI.infer,
        harpoon.HostedAI.stream,
        harpoon.AsyncHostedAI.infer,
        harpoon.AsyncHostedAI.stream,
        harpoon.Lease.infer,
        harpoon.Lease.stream,
        harpoon.AsyncLease.infer,
        harpoon.AsyncLease.stream,
        harpoon.Endpoint.infer,
        harpoon.AsyncEndpoint.infer,
        harpoon.Orchestrator.infer,
        harpoon.Orchestrator.process,
        harpoon.Orchestrator.stream,
        harpoon.Session.infer,
        harpoon.Session.stream,
    ]
    defaults = {
        f.__qualname__: inspect.signature(f).parameters["max_tokens"].default for f in calls
    }
    assert defaults == dict.fromkeys(defaults, None)
