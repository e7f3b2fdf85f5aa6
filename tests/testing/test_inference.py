"""Deterministic inference, its accounting, and server-sent event streams."""

from __future__ import annotations

import json
from typing import Any
from unittest.mock import ANY

import httpx
import pytest

from hostedai_harpoon.testing import Emulator, Request
from tests.conftest import EmulatorFactory

from .conftest import allocate


def _events(body: str) -> list[Any]:
    assert body.endswith("\n\n")
    chunks = body[:-2].split("\n\n")
    assert all(chunk.startswith("data: ") for chunk in chunks)
    return [chunk[6:] if chunk == "data: [DONE]" else json.loads(chunk[6:]) for chunk in chunks]


@pytest.fixture
def ready(client: httpx.Client) -> dict[str, str]:
    """One ready allocation per model."""
    return {
        model: allocate(client, model).json()["id"] for model in ("gemma-3-270m", "qwen3-30b-a3b")
    }


def _infer(client: httpx.Client, allocation_id: str, prompt: str, **fields: Any) -> dict[str, Any]:
    response = client.post(
        "/v1/inference", json={"allocation_id": allocation_id, "prompt": prompt, **fields}
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def test_same_model_and_prompt_give_the_same_answer(make_emulator: EmulatorFactory) -> None:
    answers = []
    for seed in (1, 2):
        with make_emulator(seed=seed).http_client(headers={"Authorization": "Bearer k"}) as http:
            alloc_id = allocate(http).json()["id"]
            answers.append(_infer(http, alloc_id, "Summarise the GPU market"))
    first, second = answers
    assert first["text"] == second["text"]
    assert first["usage"] == second["usage"]
    assert first["id"] != second["id"]


def test_answer_shape_and_accounting(client: httpx.Client, ready: dict[str, str]) -> None:
    result = _infer(client, ready["gemma-3-270m"], "x" * 41)
    assert set(result) == {
        "id", "allocation_id", "model", "text", "finish_reason", "usage", "latency_ms",
    }  # fmt: skip
    assert result["id"].startswith("inf_")
    assert result["allocation_id"] == ready["gemma-3-270m"]
    assert result["model"] == "gemma-3-270m"
    assert result["usage"]["input_tokens"] == 11
    assert result["usage"]["output_tokens"] == len(result["text"].split(" "))
    assert result["finish_reason"] == "stop"
    assert 8 <= result["usage"]["output_tokens"] <= 120


def test_different_prompts_give_different_answers(
    client: httpx.Client, ready: dict[str, str]
) -> None:
    texts = {_infer(client, ready["gemma-3-270m"], f"prompt {n}")["text"] for n in range(5)}
    assert len(texts) == 5


def test_large_model_is_slower_than_small_model(
    client: httpx.Client, ready: dict[str, str]
) -> None:
    for prompt in ("a", "Prove the Riemann hypothesis", "hello"):
        small = _infer(client, ready["gemma-3-270m"], prompt, max_tokens=20)
        large = _infer(client, ready["qwen3-30b-a3b"], prompt, max_tokens=20)
        assert large["latency_ms"] > small["latency_ms"]


def test_max_tokens_cuts_the_answer_with_finish_reason_length(
    client: httpx.Client, ready: dict[str, str]
) -> None:
    full = _infer(client, ready["qwen3-30b-a3b"], "Explain attention")
    assert full["usage"]["output_tokens"] >= 16
    cut = _infer(client, ready["qwen3-30b-a3b"], "Explain attention", max_tokens=5)
    assert cut["finish_reason"] == "length"
    assert cut["usage"]["output_tokens"] == 5
    assert full["text"].startswith(cut["text"])
    assert cut["latency_ms"] < full["latency_ms"]


def test_stop_sequence_cuts_before_it(client: httpx.Client, ready: dict[str, str]) -> None:
    full = _infer(client, ready["gemma-3-270m"], "Tell me a story")["text"]
    stop = full.split(" ")[3]
    result = _infer(client, ready["gemma-3-270m"], "Tell me a story", stop=["never-there", stop])
    assert result["finish_reason"] == "stop"
    assert result["text"] == full[: full.index(stop)].rstrip(" ")
    assert stop not in result["text"]
    single = _infer(client, ready["gemma-3-270m"], "Tell me a story", stop=stop)
    assert single["text"] == result["text"]


@pytest.mark.parametrize("where", ["word", "mid-word"])
def test_stop_sequence_text_and_token_count_agree(
    client: httpx.Client, ready: dict[str, str], where: str
) -> None:
    full = _infer(client, ready["gemma-3-270m"], "Tell me a story")["text"]
    word = full.split(" ")[2]
    stop = word if where == "word" else word[1:] + " "
    for streamed in (False, True):
        body = {"allocation_id": ready["gemma-3-270m"], "prompt": "Tell me a story", "stop": stop}
        response = client.post("/v1/inference", json={**body, "stream": streamed})
        if streamed:
            events = _events(response.text)[:-1]
            text = "".join(event["delta"] for event in events)
            usage = events[-1]["usage"]
        else:
            text, usage = response.json()["text"], response.json()["usage"]
        assert not text.endswith(" ")
        assert usage["output_tokens"] == len(text.split(" ")) == (2 if where == "word" else 3)


def test_empty_stop_sequences_never_match(client: httpx.Client, ready: dict[str, str]) -> None:
    full = _infer(client, ready["gemma-3-270m"], "Tell me a story")
    assert _infer(client, ready["gemma-3-270m"], "Tell me a story", stop=["", ""]) == full | {
        "id": ANY
    }


@pytest.mark.parametrize("scale", [0.0, 0.5])
def test_inference_is_really_delayed_only_by_latency_scale(
    make_emulator: EmulatorFactory, scale: float
) -> None:
    emu = make_emulator(latency_scale=scale)
    with emu.http_client(headers={"Authorization": "Bearer k"}) as http:
        alloc_id = allocate(http).json()["id"]
    body = json.dumps({"allocation_id": alloc_id, "prompt": "p"}).encode()
    reply = emu.handle(
        Request("POST", "/v1/inference", headers={"authorization": "Bearer k"}, body=body)
    )
    assert reply.delay == pytest.approx(scale * json.loads(reply.body)["latency_ms"] / 1000)


def test_stream_sends_deltas_a_summary_and_done(
    client: httpx.Client, ready: dict[str, str]
) -> None:
    alloc_id = ready["gemma-3-270m"]
    plain = _infer(client, alloc_id, "stream me", max_tokens=6)
    response = client.post(
        "/v1/inference",
        json={"allocation_id": alloc_id, "prompt": "stream me", "max_tokens": 6, "stream": True},
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    events = _events(response.text)
    assert events[-1] == "[DONE]"
    *deltas, summary = events[:-1]
    assert len(deltas) == 6
    assert "".join(event["delta"] for event in deltas) == plain["text"]
    assert {event["id"] for event in events[:-1]} == {summary["id"]}
    assert summary["delta"] == ""
    assert summary["finish_reason"] == "length"
    assert summary["usage"] == plain["usage"]
    assert summary["latency_ms"] == plain["latency_ms"]


def test_stream_read_to_the_end_is_completed(
    emulator: Emulator, client: httpx.Client, ready: dict[str, str]
) -> None:
    body = {"allocation_id": ready["gemma-3-270m"], "prompt": "p", "stream": True}
    with client.stream("POST", "/v1/inference", json=body) as response:
        assert emulator.open_streams == 1
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    assert (emulator.streams_started, emulator.streams_completed) == (1, 1)
    assert (emulator.streams_aborted, emulator.open_streams) == (0, 0)
    assert emulator.exchanges[-1].response_body.decode() == "\n\n".join(lines) + "\n\n"


def test_stream_closed_early_is_aborted(
    emulator: Emulator, client: httpx.Client, ready: dict[str, str]
) -> None:
    body = {"allocation_id": ready["qwen3-30b-a3b"], "prompt": "p", "stream": True}
    with client.stream("POST", "/v1/inference", json=body) as response:
        chunks = response.iter_bytes()
        first = next(chunks)
        assert emulator.open_streams == 1
    assert first.startswith(b"data: {")
    assert (emulator.streams_started, emulator.streams_aborted) == (1, 1)
    assert (emulator.streams_completed, emulator.open_streams) == (0, 0)
    exchange = emulator.exchanges[-1]
    assert exchange.aborted
    assert exchange.response_body == first


async def test_async_stream_closed_early_is_aborted(
    emulator: Emulator, async_client: httpx.AsyncClient
) -> None:
    alloc_id = (await async_client.post("/v1/allocate", json={"model": "gemma-3-270m"})).json()[
        "id"
    ]
    body = {"allocation_id": alloc_id, "prompt": "p", "stream": True}
    async with async_client.stream("POST", "/v1/inference", json=body) as response:
        async for _ in response.aiter_bytes():
            break
    assert (emulator.streams_aborted, emulator.open_streams) == (1, 0)
    async with async_client.stream("POST", "/v1/inference", json=body) as response:
        text = (await response.aread()).decode()
    assert text.endswith("data: [DONE]\n\n")
    assert emulator.streams_completed == 1


def test_stream_chunk_delay_paces_events(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(stream_chunk_delay=0.01)
    with emu.http_client(headers={"Authorization": "Bearer k"}) as http:
        alloc_id = allocate(http).json()["id"]
        body = {"allocation_id": alloc_id, "prompt": "p", "max_tokens": 5, "stream": True}
        with http.stream("POST", "/v1/inference", json=body) as response:
            chunks = list(response.iter_raw())
    assert len(chunks) == 7
    assert emu.streams_completed == 1


def test_inference_on_a_released_allocation_is_gone(
    client: httpx.Client, ready: dict[str, str]
) -> None:
    alloc_id = ready["gemma-3-270m"]
    client.delete(f"/v1/allocate/{alloc_id}")
    response = client.post("/v1/inference", json={"allocation_id": alloc_id, "prompt": "p"})
    assert (response.status_code, response.json()["error"]["code"]) == (410, "allocation_released")
    assert response.json()["error"]["type"] == "gone_error"
