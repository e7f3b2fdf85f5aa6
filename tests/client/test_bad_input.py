"""Bad input from the caller gets a typed error before anything is sent."""

from __future__ import annotations

import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator
from tests.client._support import AnyClient, ClientFactory, Flavor, call, close


@pytest.mark.parametrize(
    "prompt", [object(), float("nan")], ids=["not-serialisable", "not-json-number"]
)
async def test_a_body_that_cannot_be_json_is_a_configuration_error(
    make_client: ClientFactory, emulator: Emulator, prompt: object
) -> None:
    client = make_client(emulator)
    allocation = await call(client, "create_allocation", "gemma-3-270m")
    with pytest.raises(harpoon.ConfigurationError, match=r"^prompt must be a string"):
        await call(client, "infer", allocation.id, prompt)
    assert emulator.requests_to("POST", "/v1/inference") == []


def test_a_stream_read_twice_says_so(emulator: Emulator) -> None:
    client = harpoon.HostedAI("http://127.0.0.1:8080", "sk", http_client=emulator.http_client())
    allocation = client.create_allocation("gemma-3-270m")
    stream = client.stream(allocation.id, "hello")
    assert list(stream)
    with pytest.raises(harpoon.HostedAIError, match="already read"):
        list(stream)


async def test_an_async_stream_read_twice_says_so(emulator: Emulator) -> None:
    client = harpoon.AsyncHostedAI(
        "http://127.0.0.1:8080", "sk", http_client=emulator.async_http_client()
    )
    allocation = await client.create_allocation("gemma-3-270m")
    stream = await client.stream(allocation.id, "hello")
    assert [chunk async for chunk in stream]
    with pytest.raises(harpoon.HostedAIError, match="already read"):
        [chunk async for chunk in stream]


def test_a_stream_closed_before_reading_says_so(emulator: Emulator) -> None:
    client = harpoon.HostedAI("http://127.0.0.1:8080", "sk", http_client=emulator.http_client())
    allocation = client.create_allocation("gemma-3-270m")
    stream = client.stream(allocation.id, "hello")
    stream.close()
    with pytest.raises(harpoon.HostedAIError, match="cannot be read"):
        list(stream)


async def test_an_async_stream_can_be_used_without_await(emulator: Emulator) -> None:
    client = harpoon.AsyncHostedAI(
        "http://127.0.0.1:8080", "sk", http_client=emulator.async_http_client()
    )
    allocation = await client.create_allocation("gemma-3-270m")
    stream = client.stream(allocation.id, "hello")
    assert emulator.requests_to("POST", "/v1/inference") == []  # nothing sent yet
    async with stream as chunks:
        text = "".join([chunk.delta async for chunk in chunks])
    assert text
    assert stream.request_id is not None
    with pytest.raises(harpoon.HostedAIError, match="not started"):
        _ = client.stream(allocation.id, "x").response


async def test_a_call_on_a_closed_client_is_a_usage_error_not_a_connection_error(
    flavor: Flavor,
) -> None:
    # A retry handler written for network failures must not retry this one forever.
    with Emulator().serve() as base_url:
        client: AnyClient = (
            harpoon.HostedAI(base_url, "sk")
            if flavor == "sync"
            else harpoon.AsyncHostedAI(base_url, "sk")
        )
        await close(client)
        with pytest.raises(harpoon.UsageError, match="client is closed") as caught:
            await call(client, "health")
    assert not isinstance(caught.value, harpoon.APIConnectionError)
