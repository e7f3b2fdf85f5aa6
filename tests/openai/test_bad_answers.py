"""A server that breaks the OpenAI-compatible protocol gets a typed error, never a bare one."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest

import hostedai_harpoon as harpoon

MODEL = "gemma-3-270m"
GOOD = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 1,
    "model": MODEL,
    "choices": [
        {"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}
    ],
    "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
}
EVENT = {"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": MODEL}


def _json(payload: object, status: int = 200) -> Callable[[httpx.Request], httpx.Response]:
    return lambda request: httpx.Response(status, json=payload)


def _events(*events: object) -> Callable[[httpx.Request], httpx.Response]:
    body = b"".join(
        b"data: " + (e.encode() if isinstance(e, str) else json.dumps(e).encode()) + b"\n\n"
        for e in events
    )
    return lambda request: httpx.Response(
        200, content=body, headers={"content-type": "text/event-stream"}
    )


def _endpoint(answer: Callable[[httpx.Request], httpx.Response]) -> harpoon.Endpoint:
    http = httpx.Client(transport=httpx.MockTransport(answer))
    return harpoon.Endpoint("https://vllm.example", model=MODEL, http_client=http, max_retries=0)


def _async_endpoint(answer: Callable[[httpx.Request], httpx.Response]) -> harpoon.AsyncEndpoint:
    http = httpx.AsyncClient(transport=httpx.MockTransport(answer))
    return harpoon.AsyncEndpoint(
        "https://vllm.example", model=MODEL, http_client=http, max_retries=0
    )


def test_a_good_answer_is_read() -> None:
    result = _endpoint(_json(GOOD)).infer("Hi")
    assert (result.id, result.text, result.finish_reason) == ("chatcmpl-1", "hi", "stop")
    assert result.usage == harpoon.Usage(1, 1)


ANSWERS = {
    "a HostedAI answer, not an OpenAI one": (
        {"id": "inf_1", "text": "hi", "finish_reason": "stop", "usage": {"input_tokens": 1}},
        "no 'choices' list",
    ),
    "a 200 with an error object": (
        {"error": {"message": "CUDA out of memory", "type": "InternalServerError", "code": 500}},
        "error object: CUDA out of memory",
    ),
    "usage of the wrong type": ({**GOOD, "usage": "2 tokens"}, "'usage' must be an object"),
    "token counts of the wrong type": (
        {**GOOD, "usage": {"prompt_tokens": "1", "completion_tokens": 1}},
        "usage.prompt_tokens' must be a non-negative integer",
    ),
    "no usage": ({k: v for k, v in GOOD.items() if k != "usage"}, "'usage' must be an object"),
    "an unknown finish reason": (
        {**GOOD, "choices": [{**GOOD["choices"][0], "finish_reason": "tool_calls"}]},  # type: ignore[index]
        "finish_reason 'tool_calls'",
    ),
    "an empty list of choices": ({**GOOD, "choices": []}, "has no choice"),
    "not an object": ([GOOD], "not a JSON object"),
}


@pytest.mark.parametrize(("answer", "reason"), ANSWERS.values(), ids=ANSWERS.keys())
async def test_a_bad_answer_is_a_response_validation_error(answer: object, reason: str) -> None:
    with pytest.raises(harpoon.ResponseValidationError, match=reason) as caught:
        _endpoint(_json(answer)).infer("Hi")
    assert caught.value.status_code == 200
    with pytest.raises(harpoon.ResponseValidationError, match=reason):
        await _async_endpoint(_json(answer)).infer("Hi")


def test_an_openai_error_envelope_is_an_api_status_error() -> None:
    envelope = {"error": {"message": "model overloaded", "type": "x", "param": None, "code": None}}
    with pytest.raises(harpoon.InternalServerError, match="model overloaded") as caught:
        _endpoint(_json(envelope, 500)).infer("Hi")
    assert caught.value.status_code == 500
    with pytest.raises(harpoon.BadRequestError, match="model overloaded"):
        _endpoint(_json(envelope, 400)).infer("Hi")


ROLE = {**EVENT, "choices": [{"index": 0, "delta": {"role": "assistant"}, "finish_reason": None}]}
TEXT = {**EVENT, "choices": [{"index": 0, "delta": {"content": "hi"}, "finish_reason": None}]}
LAST = {**EVENT, "choices": [{"index": 0, "delta": {"content": "!"}, "finish_reason": "stop"}]}
USAGE = {**EVENT, "choices": [], "usage": {"prompt_tokens": 1, "completion_tokens": 2}}

STREAMS = {
    "a stream that never sends [DONE]": ((ROLE, TEXT, LAST, USAGE), "ended before its \\[DONE\\]"),
    "an event without choices": ((ROLE, EVENT, LAST, USAGE, "[DONE]"), "no 'choices' list"),
    "usage of the wrong type": ((TEXT, LAST, {**USAGE, "usage": [1]}, "[DONE]"), "'usage'"),
    "an error event": (
        (TEXT, {"error": {"message": "engine died"}}, "[DONE]"),
        "error object: engine died",
    ),
    "no finish reason": ((TEXT, "[DONE]"), "without a finish_reason"),
    "not JSON": ((TEXT, "{oops", "[DONE]"), "not valid JSON"),
}


@pytest.mark.parametrize(("events", "reason"), STREAMS.values(), ids=STREAMS.keys())
async def test_a_bad_stream_is_a_response_validation_error(
    events: tuple[object, ...], reason: str
) -> None:
    with pytest.raises(harpoon.ResponseValidationError, match=reason):
        list(_endpoint(_events(*events)).stream("Hi"))
    with pytest.raises(harpoon.ResponseValidationError, match=reason):
        async with _async_endpoint(_events(*events)).stream("Hi") as chunks:
            [chunk async for chunk in chunks]


def test_a_good_stream_ends_with_the_finish_reason_and_usage() -> None:
    chunks = list(_endpoint(_events(ROLE, TEXT, LAST, USAGE, "[DONE]")).stream("Hi"))
    assert [chunk.delta for chunk in chunks] == ["hi", "!", ""]
    assert (chunks[-1].finish_reason, chunks[-1].usage) == ("stop", harpoon.Usage(1, 2))
    assert all(chunk.id == "chatcmpl-1" for chunk in chunks)


def test_a_server_that_ignores_include_usage_still_ends_the_stream() -> None:
    chunks = list(_endpoint(_events(TEXT, LAST, "[DONE]")).stream("Hi"))
    assert (chunks[-1].finish_reason, chunks[-1].usage) == ("stop", None)
