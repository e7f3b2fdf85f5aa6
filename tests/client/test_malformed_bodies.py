"""Whatever the server answers, only ``HostedAIError``s escape; contract breaks are
``ResponseValidationError``s; unknown extra fields are ignored."""

from __future__ import annotations

import asyncio
import copy
import gzip
import json
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, Fault, FaultPlan
from tests.client._support import (
    AnyClient,
    ClientFactory,
    Flavor,
    call,
    mock_async_client,
    mock_client,
    take,
)

ALLOCATION: dict[str, Any] = {
    "id": "alloc_0123456789abcdef01234567",
    "pool_id": "gpu-pool-1",
    "model": "gemma-3-270m",
    "gpu_count": 1,
    "gpu_type": "nvidia-h100-80gb",
    "status": "ready",
    "endpoint": "https://emulator.invalid/alloc_0123456789abcdef01234567",
    "created_at": "2026-01-01T00:00:00.000Z",
    "expires_at": "2026-01-01T00:10:00.000Z",
    "ttl_seconds": 600,
}
POOL: dict[str, Any] = {
    "id": "gpu-pool-1",
    "gpu_type": "nvidia-h100-80gb",
    "gpus_total": 8,
    "gpus_free": 7,
    "models": ["gemma-3-270m", "qwen3-30b-a3b"],
    "default": True,
}
INFERENCE: dict[str, Any] = {
    "id": "inf_0123456789abcdef01234567",
    "allocation_id": ALLOCATION["id"],
    "model": "gemma-3-270m",
    "text": "the answer",
    "finish_reason": "stop",
    "usage": {"input_tokens": 2, "output_tokens": 2},
    "latency_ms": 19.0,
}
HEALTH: dict[str, Any] = {"status": "ok", "version": "1.0.0"}
EVENTS: list[Any] = [
    {"id": INFERENCE["id"], "delta": "the"},
    {"id": INFERENCE["id"], "delta": " answer"},
    {
        "id": INFERENCE["id"],
        "delta": "",
        "finish_reason": "stop",
        "usage": {"input_tokens": 2, "output_tokens": 2},
        "latency_ms": 19.0,
    },
]

Invoke = Callable[[AnyClient], Any]


async def consume_stream(client: AnyClient) -> list[harpoon.InferenceChunk]:
    return await take(await call(client, "stream", allocation_id="alloc_1", prompt="hi"))


# endpoint name -> (the call, a valid answer's body, the type a success returns)
ENDPOINTS: dict[str, tuple[Invoke, Any, type | None]] = {
    "health": (lambda c: call(c, "health"), HEALTH, harpoon.Health),
    "list_pools": (lambda c: call(c, "list_pools"), {"data": [POOL]}, list),
    "get_pool": (lambda c: call(c, "get_pool", "gpu-pool-1"), POOL, harpoon.Pool),
    "create_allocation": (
        lambda c: call(c, "create_allocation", model="gemma-3-270m"),
        ALLOCATION,
        harpoon.Allocation,
    ),
    "get_allocation": (
        lambda c: call(c, "get_allocation", "alloc_1"),
        ALLOCATION,
        harpoon.Allocation,
    ),
    "list_allocations": (lambda c: call(c, "list_allocations"), {"data": [ALLOCATION]}, list),
    "renew_allocation": (
        lambda c: call(c, "renew_allocation", "alloc_1"),
        ALLOCATION,
        harpoon.Allocation,
    ),
    "release_allocation": (lambda c: call(c, "release_allocation", "alloc_1"), None, None),
    "infer": (
        lambda c: call(c, "infer", allocation_id="alloc_1", prompt="hi"),
        INFERENCE,
        harpoon.InferenceResult,
    ),
    "stream": (consume_stream, EVENTS, list),
}

# Arbitrary JSON values, and valid answers with a few of their parts broken.

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@st.composite
def mutated(draw: st.DrawFn, value: Any, depth: int = 0) -> Any:
    """``value`` with one of its parts removed, replaced, or joined by an extra field."""
    if isinstance(value, dict) and value and depth < 4:
        key = draw(st.sampled_from(sorted(value)))
        action = draw(st.sampled_from(["delete", "replace", "recurse", "extra"]))
        result = dict(value)
        if action == "delete":
            del result[key]
        elif action == "replace":
            result[key] = draw(json_values)
        elif action == "recurse":
            result[key] = draw(mutated(value[key], depth + 1))
        else:
            result[draw(st.text(max_size=8))] = draw(json_values)
        return result
    if isinstance(value, list) and value and depth < 4:
        index = draw(st.integers(0, len(value) - 1))
        result_list = list(value)
        result_list[index] = draw(mutated(value[index], depth + 1))
        return result_list
    return draw(json_values)


def sse(events: list[Any], done: bool) -> bytes:
    lines = [b"data: " + json.dumps(event).encode() + b"\n\n" for event in events]
    if done:
        lines.append(b"data: [DONE]\n\n")
    return b"".join(lines)


@st.composite
def bodies(draw: st.DrawFn, valid: Any, streamed: bool) -> bytes:
    """A response body: raw bytes, any JSON, or the valid answer slightly broken."""
    kind = draw(st.sampled_from(["bytes", "json", "mutated", "mutated", "valid"]))
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    if kind == "json":
        return json.dumps(draw(json_values)).encode()
    value = copy.deepcopy(valid) if kind == "valid" else draw(mutated(valid))
    if streamed and isinstance(value, list):
        return sse(value, done=draw(st.booleans()))
    return json.dumps(value).encode()


Answer = tuple[int, list[tuple[bytes, bytes]], bytes]


@st.composite
def answers(draw: st.DrawFn, valid: Any, streamed: bool) -> Answer:
    """A status, raw headers and a raw (maybe "gzip-encoded") body."""
    status = draw(st.sampled_from([200, 201, 204, 400, 404, 409, 410, 422, 429, 500, 503]))
    headers: list[tuple[bytes, bytes]] = []
    content_type = draw(
        st.sampled_from(
            [None, b"application/json", b"text/event-stream", b"text/html; charset=bogus"]
        )
    )
    if content_type is not None:
        headers.append((b"content-type", content_type))
    if draw(st.booleans()):
        headers.append((b"x-request-id", draw(st.binary(min_size=1, max_size=30))))
    if draw(st.booleans()):
        retry_after = draw(
            st.sampled_from([b"1", b"0", b"\xb2", b"Wed, 21 Oct 2015 07:28:00 GMT", b"-3", b"1e9"])
            | st.binary(max_size=20)
        )
        headers.append((b"retry-after", retry_after))
    body = draw(bodies(valid, streamed))
    if draw(st.integers(0, 9)) == 0:
        headers.append((b"content-encoding", b"gzip"))
        if draw(st.booleans()):
            body = gzip.compress(body)
    return status, headers, body


class RawStream(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body handed over as it came off the wire: decoded only when the client reads it."""

    def __init__(self, *chunks: bytes) -> None:
        self._chunks = chunks

    def __iter__(self) -> Iterator[bytes]:
        yield from self._chunks

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk


def run_both(endpoint: str, answer: Answer) -> None:
    """Call ``endpoint`` on a sync and an async client that always get ``answer``."""
    invoke, _, returns = ENDPOINTS[endpoint]
    status, headers, body = answer

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers, stream=RawStream(body))

    async def scenario() -> None:
        for make in (mock_client, mock_async_client):
            client = make(handler, max_retries=1, circuit_breaker=None)
            try:
                result = await invoke(client)
            except harpoon.HostedAIError:
                continue
            if returns is None:
                assert result is None
            else:
                assert isinstance(result, returns)

    asyncio.run(scenario())


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data(), endpoint=st.sampled_from(sorted(ENDPOINTS)))
def test_only_hostedai_errors_escape_whatever_the_server_answers(
    data: st.DataObject, endpoint: str
) -> None:
    _, valid, _ = ENDPOINTS[endpoint]
    run_both(endpoint, data.draw(answers(valid, streamed=endpoint == "stream")))


# The same, pinned: cases the property found or that must never regress


def answer_with(status: int, body: bytes, **headers: str) -> Callable[[httpx.Request], Any]:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, headers=headers, stream=RawStream(body))

    return handler


async def expect_validation_error(
    flavor: Flavor, handler: Callable[[httpx.Request], Any], endpoint: str = "health", **kw: Any
) -> harpoon.ResponseValidationError:
    client = (mock_client if flavor == "sync" else mock_async_client)(handler, **kw)
    with pytest.raises(harpoon.ResponseValidationError) as caught:
        await ENDPOINTS[endpoint][0](client)
    return caught.value


@pytest.mark.parametrize("status", [200, 500])
async def test_absurdly_deep_json_is_a_validation_error_or_a_status_error(
    flavor: Flavor, status: int
) -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    client = (mock_client if flavor == "sync" else mock_async_client)(
        answer_with(status, deep), max_retries=0
    )
    with pytest.raises(
        harpoon.ResponseValidationError if status == 200 else harpoon.APIStatusError
    ):
        await call(client, "health")


@pytest.mark.parametrize("endpoint", ["health", "stream"])
async def test_a_body_that_does_not_decompress_is_a_validation_error(
    flavor: Flavor, endpoint: str
) -> None:
    content_type = "text/event-stream" if endpoint == "stream" else "application/json"
    handler = answer_with(
        200, b"not gzip at all", **{"content-encoding": "gzip", "content-type": content_type}
    )
    error = await expect_validation_error(flavor, handler, endpoint)
    assert "decode" in str(error)


async def test_a_retry_after_of_non_ascii_digits_is_ignored(flavor: Flavor) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers=[(b"retry-after", b"\xb2")], content=b"{}")

    client = (mock_client if flavor == "sync" else mock_async_client)(handler, max_retries=0)
    with pytest.raises(harpoon.RateLimitError) as caught:
        await call(client, "health")
    assert caught.value.retry_after is None


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_an_over_large_body_is_a_validation_error(flavor: Flavor, declared: bool) -> None:
    big = json.dumps({"status": "ok", "version": "x" * 5000}).encode()

    def handler(request: httpx.Request) -> httpx.Response:
        if declared:
            return httpx.Response(200, content=big)
        return httpx.Response(200, stream=RawStream(big[:2000], big[2000:]))

    error = await expect_validation_error(flavor, handler, max_response_bytes=4096)
    assert "larger than 4096 bytes" in str(error)


@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("health", b"<html>oops</html>"),
        ("health", b'{"status": "ok"'),
        ("health", b'{"status": "fine", "version": "1"}'),
        ("health", b"[]"),
        ("get_pool", json.dumps({**POOL, "models": "gemma"}).encode()),
        ("get_pool", json.dumps({**POOL, "gpus_total": "8"}).encode()),
        ("get_pool", json.dumps({**POOL, "default": 1}).encode()),
        ("get_allocation", json.dumps({**ALLOCATION, "status": "sleeping"}).encode()),
        ("get_allocation", json.dumps({**ALLOCATION, "created_at": "yesterday"}).encode()),
        ("get_allocation", json.dumps({**ALLOCATION, "gpu_count": True}).encode()),
        ("get_allocation", json.dumps({k: v for k, v in ALLOCATION.items() if k != "id"}).encode()),
        ("list_allocations", json.dumps({"data": {"0": ALLOCATION}}).encode()),
        ("list_pools", json.dumps([POOL]).encode()),
        ("infer", json.dumps({**INFERENCE, "usage": None}).encode()),
        ("infer", json.dumps({**INFERENCE, "finish_reason": "tired"}).encode()),
        ("infer", json.dumps({**INFERENCE, "latency_ms": -1}).encode()),
        ("stream", sse([{"id": "inf_1"}], done=True)),
        ("stream", sse([*EVENTS[:2], {**EVENTS[2], "usage": []}], done=True)),
        ("stream", b"data: not json\n\n"),
    ],
)
async def test_a_body_that_breaks_the_contract_is_a_validation_error(
    flavor: Flavor, endpoint: str, body: bytes
) -> None:
    content_type = "text/event-stream" if endpoint == "stream" else "application/json"
    handler = answer_with(200, body, **{"content-type": content_type, "x-request-id": "req_bad"})
    error = await expect_validation_error(flavor, handler, endpoint)
    assert error.request_id == "req_bad"
    assert error.status_code == 200


@pytest.mark.parametrize("endpoint", sorted(set(ENDPOINTS) - {"release_allocation"}))
async def test_unknown_extra_fields_are_ignored(flavor: Flavor, endpoint: str) -> None:
    _, valid, returns = ENDPOINTS[endpoint]

    def with_extras(value: Any) -> Any:
        if isinstance(value, dict):
            return {**{k: with_extras(v) for k, v in value.items()}, "x_new_field": {"a": [1]}}
        if isinstance(value, list):
            return [with_extras(item) for item in value]
        return value

    if endpoint == "stream":
        body = sse(with_extras(valid), done=True)
        headers = {"content-type": "text/event-stream"}
    else:
        body = json.dumps(with_extras(valid)).encode()
        headers = {"content-type": "application/json"}
    client = (mock_client if flavor == "sync" else mock_async_client)(
        answer_with(200, body, **headers)
    )
    result = await ENDPOINTS[endpoint][0](client)
    assert returns is not None
    assert isinstance(result, returns)


# The emulator's own corrupting faults, on every call


async def call_everything(emu: Emulator, client: AnyClient) -> list[BaseException]:
    saved, emu.faults = emu.faults, None
    alloc = await call(client, "create_allocation", model="gemma-3-270m")
    emu.faults = saved
    calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = [
        ("health", (), {}),
        ("list_pools", (), {}),
        ("get_pool", ("gpu-pool-1",), {}),
        ("create_allocation", (), {"model": "gemma-3-270m"}),
        ("get_allocation", (alloc.id,), {}),
        ("list_allocations", (), {}),
        ("renew_allocation", (alloc.id,), {}),
        ("infer", (), {"allocation_id": alloc.id, "prompt": "hi"}),
    ]
    errors: list[BaseException] = []
    for method, args, kwargs in calls:
        try:
            await call(client, method, *args, **kwargs)
        except Exception as error:
            errors.append(error)
    try:
        await take(await call(client, "stream", allocation_id=alloc.id, prompt="hi"))
    except Exception as error:
        errors.append(error)
    return errors


@pytest.mark.parametrize("kind", ["malformed", "truncate", "invalid_schema"])
async def test_every_call_turns_a_corrupted_answer_into_a_validation_error(
    emulator: Emulator, make_client: ClientFactory, kind: str
) -> None:
    client = make_client(emulator, max_retries=0, circuit_breaker=None)
    emulator.faults = FaultPlan(rules=[Fault(kind)])
    errors = await call_everything(emulator, client)
    assert len(errors) == 9
    assert all(type(error) is harpoon.ResponseValidationError for error in errors), errors


@pytest.mark.parametrize("endpoint", ["health", "get_allocation", "infer", "list_pools"])
async def test_an_empty_204_where_a_value_is_due_is_a_validation_error(
    flavor: Flavor, endpoint: str
) -> None:
    error = await expect_validation_error(flavor, answer_with(204, b""), endpoint)
    assert error.status_code == 204
