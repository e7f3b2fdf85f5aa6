"""The emulator's OpenAI-compatible answers, and this package's requests, validate against
the committed fragments of the OpenAI API description."""

from __future__ import annotations

import json
from typing import Literal

import attrs
import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, Fault, FaultPlan
from tests.conformance import check_exchanges
from tests.openai._spec import check_openai_exchange, stream_payloads, validate

MODEL = "gemma-3-270m"
INFERENCES: tuple[Literal["openai", "openai-completions"], ...] = ("openai", "openai-completions")


def _exercise(endpoint: harpoon.Endpoint) -> None:
    endpoint.models()
    endpoint.infer("Hi", max_tokens=5, temperature=0.2, stop="kernel")
    endpoint.infer(
        messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    )
    list(endpoint.stream("Hi", stop=["the", "a"]))


def test_every_answer_and_request_on_the_openai_paths_validates(emulator: Emulator) -> None:
    emulator.faults = FaultPlan(
        rules=[
            Fault("error", path="/v1/chat/completions", times=1, status=503),
            Fault("rate_limit", path="/endpoints/*/v1/completions", times=1),
        ]
    )
    with emulator.serve_openai() as url, emulator.serve() as base_url:
        with harpoon.Endpoint(url, model=MODEL) as endpoint:
            _exercise(endpoint)
        with harpoon.Endpoint(url, model=MODEL, inference="openai-completions") as endpoint:
            endpoint.infer("Hi")
            list(endpoint.stream("Hi", max_tokens=3))
        with httpx.Client(base_url=url) as raw:
            assert (
                raw.post("/v1/chat/completions", json={"model": "nope", "messages": []}).status_code
                == 404
            )
            assert (
                raw.post("/v1/chat/completions", json={"model": MODEL, "messages": []}).status_code
                == 400
            )
            assert raw.post("/v1/completions", content=b"{").status_code == 400
            assert raw.get("/v1/chat/completions").status_code == 405
        with harpoon.HostedAI(base_url, "sk") as client:
            for inference in INFERENCES:
                with client.allocate(model=MODEL, inference=inference) as lease:
                    lease.infer("Hi")
                    list(lease.stream("Hi"))
    openai_exchanges = [e for e in emulator.exchanges if "/v1/allocate" not in e.path]
    assert {e.status for e in openai_exchanges} >= {200, 400, 404, 405, 429, 503}
    assert len(openai_exchanges) >= 16
    check_exchanges(emulator.exchanges)  # the OpenAI paths against the OpenAI description
    for exchange in openai_exchanges:
        if exchange.status == 200 and exchange.method == "POST":  # this package's requests
            name = (
                "CreateChatCompletionRequest"
                if "chat" in exchange.path
                else "CreateCompletionRequest"
            )
            validate(name, json.loads(exchange.request_body), exchange.path)


def test_the_check_is_not_vacuous(emulator: Emulator) -> None:
    with emulator.serve_openai() as url, harpoon.Endpoint(url, model=MODEL) as endpoint:
        list(endpoint.stream("Hi"))
    exchange = emulator.exchanges[-1]
    events = [json.loads(payload) for payload in stream_payloads(exchange.response_body)[:-1]]
    validate("CreateChatCompletionStreamResponse", events[1], "a good event")
    del events[1]["created"]
    with pytest.raises(AssertionError, match="'created' is a required property"):
        validate("CreateChatCompletionStreamResponse", events[1], "a broken event")
    bad_body = exchange.response_body.replace(
        b'"object":"chat.completion.chunk"', b'"object":"x"', 1
    )
    with pytest.raises(AssertionError, match="breaks the OpenAI schema"):
        check_openai_exchange(attrs.evolve(exchange, response_body=bad_body))
    check_openai_exchange(exchange)
