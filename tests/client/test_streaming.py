"""Streamed inference: chunks in order, the stream's end, and connections closed early."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, Fault, FaultPlan
from tests.client._support import (
    AnyClient,
    ClientFactory,
    Flavor,
    call,
    mock_async_client,
    mock_client,
    no_jitter,
    take,
)
from tests.conftest import EmulatorFactory

MODEL = "qwen3-30b-a3b"
PROMPT = "Explain tensor parallelism in detail"


async def ready(emu: Emulator, client: AnyClient) -> str:
    saved, emu.faults = emu.faults, None
    alloc = await call(client, "create_allocation", model=MODEL)
    emu.faults = saved
    return str(alloc.id)


async def test_the_chunks_add_up_to_the_same_answer_as_infer(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(emulator)
    alloc_id = await ready(emulator, client)
    whole = await call(client, "infer", allocation_id=alloc_id, prompt=PROMPT)
    stream = await call(client, "stream", allocation_id=alloc_id, prompt=PROMPT)
    chunks = await take(stream)
    assert all(isinstance(c, harpoon.InferenceChunk) for c in chunks)
    assert "".join(c.delta for c in chunks) == whole.text
    *body, last = chunks
    assert all(c.finish_reason is None and c.usage is None for c in body)
    assert last.delta == ""
    assert last.finish_reason == whole.finish_reason
    assert last.usage == whole.usage
    assert last.latency == pytest.approx(whole.latency)
    request_id = emulator.exchanges[-1].request_id
    assert stream.request_id == request_id
    assert {c.request_id for c in chunks} == {request_id}
    assert emulator.streams_completed == 1
    assert emulator.open_streams == 0


async def test_the_stream_request_asks_for_an_event_stream(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(emulator)
    alloc_id = await ready(emulator, client)
    await take(await call(client, "stream", allocation_id=alloc_id, prompt="hi", max_tokens=3))
    exchange = emulator.exchanges[-1]
    assert exchange.request_headers["accept"] == "text/event-stream"
    assert json.loads(exchange.request_body) == {
        "allocation_id": alloc_id,
        "prompt": "hi",
        "max_tokens": 3,
        "stream": True,
    }
    assert exchange.idempotency_key is None


async def test_stopping_early_closes_the_connection(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(emulator)
    alloc_id = await ready(emulator, client)
    stream = await call(client, "stream", allocation_id=alloc_id, prompt=PROMPT)
    assert emulator.open_streams == 1
    chunks = await take(stream, limit=2)
    assert len(chunks) == 2
    assert emulator.open_streams == 0
    assert emulator.streams_aborted == 1
    assert emulator.exchanges[-1].aborted
    assert stream.response.is_closed


def test_breaking_out_of_a_plain_for_loop_closes_the_connection(emulator: Emulator) -> None:
    with harpoon.HostedAI(
        base_url="http://127.0.0.1", api_key="k", http_client=emulator.http_client()
    ) as client:
        alloc = client.create_allocation(model=MODEL)
        for index, _chunk in enumerate(client.stream(allocation_id=alloc.id, prompt=PROMPT)):
            if index == 1:
                break
        assert emulator.streams_aborted == 1
        assert emulator.open_streams == 0


async def test_breaking_out_of_a_bare_async_for_closes_the_connection_soon_after(
    emulator: Emulator,
) -> None:
    async with harpoon.AsyncHostedAI(
        base_url="http://127.0.0.1", api_key="k", http_client=emulator.async_http_client()
    ) as client:
        alloc = await client.create_allocation(model=MODEL)
        async for _chunk in await client.stream(allocation_id=alloc.id, prompt=PROMPT):
            break
        # An abandoned async generator is closed by the event loop on its next turns.
        for _ in range(10):
            if emulator.open_streams == 0:
                break
            await asyncio.sleep(0)
        assert emulator.streams_aborted == 1
        assert emulator.open_streams == 0


async def test_closing_an_unread_stream_closes_the_connection(
    emulator: Emulator, make_client: ClientFactory, flavor: Flavor
) -> None:
    client = make_client(emulator)
    alloc_id = await ready(emulator, client)
    stream = await call(client, "stream", allocation_id=alloc_id, prompt=PROMPT)
    await call(stream, "close" if flavor == "sync" else "aclose")
    assert emulator.streams_aborted == 1
    assert emulator.open_streams == 0


async def test_a_stream_on_a_pending_allocation_raises_before_any_chunk(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = make_emulator(ready_delay=60)
    client = make_client(emu, max_retries=3)
    alloc = await call(client, "create_allocation", model=MODEL)
    with pytest.raises(harpoon.ConflictError):
        await call(client, "stream", allocation_id=alloc.id, prompt="hi")
    assert len(emu.requests_to("POST", "/v1/inference")) == 1
    assert emu.streams_started == 0


async def test_a_503_before_the_stream_starts_is_retried(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(emulator, retry=no_jitter())
    alloc_id = await ready(emulator, client)
    emulator.faults = FaultPlan(rules=[Fault("error", status=503, path="/v1/inference", times=1)])
    chunks = await take(await call(client, "stream", allocation_id=alloc_id, prompt="hi"))
    assert chunks[-1].finish_reason is not None
    assert [e.status for e in emulator.requests_to("POST", "/v1/inference")] == [503, 200]


async def test_a_dropped_stream_request_is_not_retried(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(emulator, max_retries=3)
    alloc_id = await ready(emulator, client)
    emulator.faults = FaultPlan(rules=[Fault("drop", path="/v1/inference", when="after")])
    with pytest.raises(harpoon.APIConnectionError):
        await call(client, "stream", allocation_id=alloc_id, prompt="hi")
    assert len(emulator.requests_to("POST", "/v1/inference")) == 1


async def test_a_stream_cut_before_its_done_event_is_a_validation_error(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(emulator)
    alloc_id = await ready(emulator, client)
    emulator.faults = FaultPlan(rules=[Fault("truncate", path="/v1/inference")])
    stream = await call(client, "stream", allocation_id=alloc_id, prompt=PROMPT)
    with pytest.raises(harpoon.ResponseValidationError, match=r"\[DONE\]"):
        await take(stream)
    assert stream.response.is_closed


@pytest.mark.parametrize("kind", ["malformed", "invalid_schema"])
async def test_an_unreadable_event_is_a_validation_error(
    emulator: Emulator, make_client: ClientFactory, kind: str
) -> None:
    client = make_client(emulator)
    alloc_id = await ready(emulator, client)
    emulator.faults = FaultPlan(rules=[Fault(kind, path="/v1/inference")])
    stream = await call(client, "stream", allocation_id=alloc_id, prompt=PROMPT)
    with pytest.raises(harpoon.ResponseValidationError) as caught:
        await take(stream)
    assert caught.value.request_id == emulator.exchanges[-1].request_id
    assert emulator.open_streams == 0


async def test_an_answer_that_is_not_an_event_stream_is_refused_and_closed(flavor: Flavor) -> None:
    responses: list[httpx.Response] = []

    def handler(request: httpx.Request) -> httpx.Response:
        responses.append(httpx.Response(200, json={"text": "not a stream"}))
        return responses[-1]

    client = (mock_client if flavor == "sync" else mock_async_client)(handler)
    with pytest.raises(harpoon.ResponseValidationError, match="event stream"):
        await call(client, "stream", allocation_id="alloc_1", prompt="hi")
    assert len(responses) == 1


class _BreaksMidway(httpx.SyncByteStream, httpx.AsyncByteStream):
    """An event stream whose connection fails after the first event."""

    first = b'data: {"id": "inf_1", "delta": "Hello"}\n\n'

    def __iter__(self) -> Iterator[bytes]:
        yield self.first
        raise httpx.ReadError("connection reset by peer")

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self.first
        raise httpx.ReadError("connection reset by peer")


async def test_a_connection_lost_mid_stream_is_a_connection_error(flavor: Flavor) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200, headers={"content-type": "text/event-stream"}, stream=_BreaksMidway()
        )

    client = (mock_client if flavor == "sync" else mock_async_client)(handler)
    stream = await call(client, "stream", allocation_id="alloc_1", prompt="hi")
    with pytest.raises(harpoon.APIConnectionError):
        await take(stream)
    assert stream.response.is_closed


async def test_comments_and_unknown_fields_in_the_event_stream_are_skipped(flavor: Flavor) -> None:
    body = (
        b": keep-alive\n\n"
        b"event: message\nid: 1\n"
        b'data: {"id": "inf_1", "delta": "Hi", "extra": [1, 2]}\n\n'
        b'data: {"id": "inf_1", "delta": "", "finish_reason": "stop",\n'
        b'data: "usage": {"input_tokens": 1, "output_tokens": 1}, "latency_ms": 3}\n\n'
        b"data: [DONE]\n\n"
        b'data: {"ignored": "after done"}\n\n'
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body)

    client = (mock_client if flavor == "sync" else mock_async_client)(handler)
    chunks = await take(await call(client, "stream", allocation_id="alloc_1", prompt="hi"))
    assert [(c.delta, c.finish_reason) for c in chunks] == [("Hi", None), ("", "stop")]
    assert chunks[-1].usage == harpoon.Usage(input_tokens=1, output_tokens=1)
    assert chunks[-1].latency == pytest.approx(0.003)
