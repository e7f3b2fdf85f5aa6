"""The call hooks, fed by hand, against the real SDK: spans, attributes, metrics."""

from __future__ import annotations

import asyncio
import json

import httpx
import pytest
from opentelemetry import trace
from opentelemetry.trace import SpanKind, StatusCode

from hostedai_harpoon import RateLimitError
from hostedai_harpoon._models import InferenceChunk, InferenceResult, Usage
from hostedai_harpoon._telemetry import Operation, start_call
from hostedai_harpoon._telemetry._hooks import NO_CALL
from tests.telemetry.conftest import Telemetry

INFER = Operation("text_completion", "/v1/inference", genai=True)
CREATE = Operation("create_allocation", "/v1/allocate")
URL = "https://api.example.com:8443/v1/inference"
BODY = {
    "allocation_id": "alloc-1",
    "prompt": "What is a GPU?",
    "model": "gemma-3-270m",
    "max_tokens": 64,
    "temperature": 0.5,
    "stop": ["\n"],
}


def result(text: str = "A processor.") -> InferenceResult:
    return InferenceResult(
        id="inf-42",
        allocation_id="alloc-1",
        model="gemma-3-270m-it",
        text=text,
        finish_reason="stop",
        usage=Usage(input_tokens=5, output_tokens=3),
        latency=0.01,
    )


def rate_limited() -> RateLimitError:
    return RateLimitError("slow down", status_code=429, request_id="req-1", code="rate_limited")


def test_an_inference_is_a_client_span_named_after_operation_and_model(otel: Telemetry) -> None:
    call = start_call(INFER, BODY)
    call.attempt_started(0, httpx.Request("POST", URL))
    call.attempt_ended(200)
    call.succeeded(result())

    span = otel.span("text_completion gemma-3-270m")
    assert span.kind is SpanKind.CLIENT
    assert dict(span.attributes or {}) == {
        "hostedai.operation": "text_completion",
        "gen_ai.operation.name": "text_completion",
        "gen_ai.provider.name": "hostedai",
        "hostedai.allocation.id": "alloc-1",
        "gen_ai.request.model": "gemma-3-270m",
        "gen_ai.request.max_tokens": 64,
        "gen_ai.request.temperature": 0.5,
        "gen_ai.request.stop_sequences": ("\n",),
        "server.address": "api.example.com",
        "server.port": 8443,
        "gen_ai.response.id": "inf-42",
        "gen_ai.response.model": "gemma-3-270m-it",
        "gen_ai.response.finish_reasons": ("stop",),
        "gen_ai.usage.input_tokens": 5,
        "gen_ai.usage.output_tokens": 3,
    }
    assert span.status.status_code is StatusCode.UNSET


def test_each_attempt_is_a_child_http_span_and_retries_are_counted(otel: Telemetry) -> None:
    call = start_call(INFER, BODY)
    call.attempt_started(0, httpx.Request("POST", URL))
    call.attempt_ended(429)
    call.retrying(0.25, rate_limited())
    call.attempt_started(1, httpx.Request("POST", URL))
    call.attempt_ended(200)
    call.succeeded(result())

    parent = otel.span("text_completion gemma-3-270m")
    first, second = [span for span in otel.spans() if span.name == "POST /v1/inference"]
    for attempt in (first, second):
        assert attempt.kind is SpanKind.CLIENT
        assert attempt.parent is not None
        assert attempt.parent.span_id == parent.context.span_id
        assert attempt.context.trace_id == parent.context.trace_id
    assert first.attributes == {
        "http.request.method": "POST",
        "server.address": "api.example.com",
        "server.port": 8443,
        "url.template": "/v1/inference",
        "url.full": URL,
        "http.response.status_code": 429,
        "error.type": "429",
    }
    assert first.status.status_code is StatusCode.ERROR
    assert (second.attributes or {})["http.request.resend_count"] == 1
    assert "error.type" not in (second.attributes or {})
    (event,) = parent.events
    assert event.name == "hostedai.retry"
    assert event.attributes == {
        "hostedai.retry.wait": 0.25,
        "error.type": "hostedai_harpoon.RateLimitError",
    }
    (retry,) = otel.points("hostedai.retries")
    assert retry.value == 1
    assert dict(retry.attributes) == {
        "hostedai.operation": "text_completion",
        "error.type": "hostedai_harpoon.RateLimitError",
    }
    statuses = sorted(
        point.attributes["http.response.status_code"]
        for point in otel.points("http.client.request.duration")
    )
    assert statuses == [200, 429]


def test_spans_nest_under_the_callers_current_span(otel: Telemetry) -> None:
    tracer = otel.tracer_provider.get_tracer("user")
    with tracer.start_as_current_span("user work") as outer:
        call = start_call(CREATE, {"model": "m"})
    call.attempt_started(0, httpx.Request("POST", "https://api.example.com/v1/allocate"))
    call.attempt_ended(201)
    call.succeeded(object())

    span = otel.span("create_allocation")
    assert span.parent is not None
    assert span.parent.span_id == outer.get_span_context().span_id
    assert dict(span.attributes or {}) == {
        "hostedai.operation": "create_allocation",
        "server.address": "api.example.com",
        "server.port": 443,
    }
    attempt = otel.span("POST /v1/allocate")
    assert attempt.parent is not None
    assert attempt.parent.span_id == span.context.span_id
    # Only GenAI operations feed the GenAI duration histogram.
    assert "gen_ai.client.operation.duration" not in otel.metrics()


def test_an_explicit_parent_wins_over_the_current_context(otel: Telemetry) -> None:
    tracer = otel.tracer_provider.get_tracer("user")
    with tracer.start_as_current_span("lease") as lease:
        parent = trace.set_span_in_context(lease)
    with tracer.start_as_current_span("elsewhere"):
        call = start_call(CREATE, parent=parent)
    call.failed(RuntimeError("boom"))
    span = otel.span("create_allocation")
    assert span.parent is not None
    assert span.parent.span_id == lease.get_span_context().span_id


def test_a_failed_call_carries_error_type_on_span_and_metric(otel: Telemetry) -> None:
    call = start_call(INFER, BODY)
    call.attempt_started(0, httpx.Request("POST", URL))
    call.attempt_ended(429)
    call.failed(rate_limited())

    span = otel.span("text_completion gemma-3-270m")
    assert (span.attributes or {})["error.type"] == "hostedai_harpoon.RateLimitError"
    assert span.status.status_code is StatusCode.ERROR
    (event,) = span.events
    assert event.name == "exception"
    assert event.attributes == {
        "exception.type": "hostedai_harpoon.RateLimitError",
        "exception.message": "429 rate_limited: slow down (request_id=req-1)",
    }
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert dict(duration.attributes) == {
        "gen_ai.operation.name": "text_completion",
        "gen_ai.provider.name": "hostedai",
        "gen_ai.request.model": "gemma-3-270m",
        "server.address": "api.example.com",
        "server.port": 8443,
        "error.type": "hostedai_harpoon.RateLimitError",
    }
    assert "gen_ai.client.token.usage" not in otel.metrics()


def test_a_transport_error_names_its_class(otel: Telemetry) -> None:
    call = start_call(CREATE)
    call.attempt_started(0, httpx.Request("POST", "http://127.0.0.1:8080/v1/allocate"))
    call.attempt_ended(httpx.ConnectError("refused"))
    call.failed(httpx.ConnectError("refused"))
    attempt = otel.span("POST /v1/allocate")
    assert (attempt.attributes or {})["error.type"] == "httpx.ConnectError"
    assert (attempt.attributes or {})["server.port"] == 8080
    (point,) = otel.points("http.client.request.duration")
    assert point.attributes["error.type"] == "httpx.ConnectError"
    assert "http.response.status_code" not in point.attributes


@pytest.mark.parametrize("cancel", [GeneratorExit(), asyncio.CancelledError()])
def test_a_cancelled_call_ends_its_open_attempt_as_cancelled(
    otel: Telemetry, cancel: BaseException
) -> None:
    call = start_call(INFER, BODY)
    call.attempt_started(0, httpx.Request("POST", URL))
    call.failed(cancel)
    attempt = otel.span("POST /v1/inference")
    span = otel.span("text_completion gemma-3-270m")
    assert (attempt.attributes or {})["error.type"] == "cancelled"
    assert (span.attributes or {})["error.type"] == "cancelled"


def test_a_stream_span_lasts_until_the_stream_ends(otel: Telemetry) -> None:
    call = start_call(INFER, {**BODY, "stream": True})
    call.attempt_started(0, httpx.Request("POST", URL))
    call.attempt_ended(200)
    call.succeeded(object())
    assert otel.names() == ["POST /v1/inference"]
    call.chunk(InferenceChunk(id="inf-7", delta="A "))
    call.chunk(
        InferenceChunk(
            id="inf-7", delta="GPU.", finish_reason="length", usage=Usage(5, 2), latency=0.1
        )
    )
    call.stream_ended()

    span = otel.span("text_completion gemma-3-270m")
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.request.stream"] is True
    assert attributes["gen_ai.response.id"] == "inf-7"
    assert attributes["gen_ai.response.finish_reasons"] == ("length",)
    assert attributes["gen_ai.usage.output_tokens"] == 2
    assert isinstance(attributes["gen_ai.response.time_to_first_chunk"], float)
    (first,) = otel.points("gen_ai.client.operation.time_to_first_chunk")
    assert first.count == 1
    assert otel.metrics()["gen_ai.client.operation.time_to_first_chunk"].unit == "s"


def test_a_stream_closed_early_ends_without_finish_reasons(otel: Telemetry) -> None:
    call = start_call(INFER, {**BODY, "stream": True})
    call.succeeded(object())
    call.chunk(InferenceChunk(id="inf-7", delta="A "))
    call.stream_ended()
    call.stream_ended()
    span = otel.span("text_completion gemma-3-270m")
    assert "gen_ai.response.finish_reasons" not in (span.attributes or {})


def test_token_usage_and_duration_use_the_conventions_names_units_and_buckets(
    otel: Telemetry,
) -> None:
    call = start_call(INFER, BODY)
    call.attempt_started(0, httpx.Request("POST", URL))
    call.attempt_ended(200)
    call.succeeded(result())

    metrics = otel.metrics()
    assert metrics["gen_ai.client.token.usage"].unit == "{token}"
    assert metrics["gen_ai.client.operation.duration"].unit == "s"
    assert metrics["http.client.request.duration"].unit == "s"
    usage = {
        point.attributes["gen_ai.token.type"]: point
        for point in otel.points("gen_ai.client.token.usage")
    }
    assert usage["input"].sum == 5
    assert usage["output"].sum == 3
    assert dict(usage["input"].attributes) == {
        "gen_ai.operation.name": "text_completion",
        "gen_ai.provider.name": "hostedai",
        "gen_ai.request.model": "gemma-3-270m",
        "gen_ai.response.model": "gemma-3-270m-it",
        "server.address": "api.example.com",
        "server.port": 8443,
        "gen_ai.token.type": "input",
    }
    assert tuple(usage["input"].explicit_bounds) == (
        1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864,
    )  # fmt: skip
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert tuple(duration.explicit_bounds) == (
        0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
    )  # fmt: skip
    (http,) = otel.points("http.client.request.duration")
    assert tuple(http.explicit_bounds) == (
        0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10,
    )  # fmt: skip


def test_prompt_and_completion_stay_off_spans_unless_switched_on(
    otel: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", raising=False)
    quiet = start_call(INFER, BODY)
    quiet.succeeded(result())
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "True")
    loud = start_call(INFER, BODY)
    loud.succeeded(result())

    off, on = otel.spans()
    for text in ("What is a GPU?", "A processor."):
        assert all(text not in str(value) for value in (off.attributes or {}).values())
    attributes = on.attributes or {}
    assert json.loads(str(attributes["gen_ai.input.messages"])) == [
        {"role": "user", "parts": [{"type": "text", "content": "What is a GPU?"}]}
    ]
    assert json.loads(str(attributes["gen_ai.output.messages"])) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": "A processor."}],
            "finish_reason": "stop",
        }
    ]


def test_a_streamed_completion_is_captured_whole(
    otel: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    call = start_call(INFER, {**BODY, "stream": True})
    call.chunk(InferenceChunk(id="i", delta="A "))
    call.chunk(InferenceChunk(id="i", delta="GPU.", finish_reason="stop"))
    call.stream_ended()
    output = json.loads(str((otel.spans()[0].attributes or {})["gen_ai.output.messages"]))
    assert output[0]["parts"][0]["content"] == "A GPU."


def test_a_model_given_beside_the_body_names_the_span(otel: Telemetry) -> None:
    start_call(INFER, {"prompt": "hi"}, model="qwen3-30b-a3b").failed(ValueError("x"))
    start_call(INFER, {"prompt": "hi"}).failed(ValueError("x"))
    assert otel.names() == ["text_completion qwen3-30b-a3b", "text_completion"]


def test_secrets_in_the_url_never_reach_url_full(otel: Telemetry) -> None:
    call = start_call(CREATE)
    request = httpx.Request(
        "GET", "https://user:hunter2-secret@api.example.com/v1/allocate?sig=abc&pool_id=p"
    )
    call.attempt_started(0, request)
    call.attempt_ended(200)
    call.succeeded()
    full = str((otel.span("GET /v1/allocate").attributes or {})["url.full"])
    assert full == "https://REDACTED:REDACTED@api.example.com/v1/allocate?sig=REDACTED&pool_id=p"


def test_hooks_after_the_end_change_nothing(otel: Telemetry) -> None:
    call = start_call(INFER, BODY)
    call.succeeded(result())
    call.failed(RuntimeError("late"))
    call.retrying(1.0, RuntimeError("late"))
    call.attempt_started(1, httpx.Request("POST", URL))
    call.attempt_ended(500)
    assert otel.names() == ["text_completion gemma-3-270m"]
    assert "error.type" not in (otel.spans()[0].attributes or {})


def test_without_a_recorder_the_shared_no_op_comes_back() -> None:
    assert start_call(INFER, BODY) is NO_CALL
    assert NO_CALL.context is None
