"""The live call: one span per API call over all its attempts, a child span per attempt,
and the GenAI and HTTP client metrics."""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind

from . import _names as n
from ._hooks import STREAM_TRACE, AttributeValue, CallTrace, Operation
from ._redact import redact, url_full
from ._spans import LiveSpan, error_type, mark_failed, start

if TYPE_CHECKING:
    import httpx

    from .._models import InferenceChunk
    from ._recorder import Recorder

_DEFAULT_PORTS = {"https": 443, "http": 80}


def _messages(role: str, text: str, finish_reason: str | None = None) -> str:
    message: dict[str, object] = {"role": role, "parts": [{"type": "text", "content": text}]}
    if finish_reason is not None:
        message["finish_reason"] = finish_reason
    return json.dumps([message], ensure_ascii=False)


class LiveCall(LiveSpan, CallTrace):
    """A recording call (see ``CallTrace`` for what each hook means)."""

    __slots__ = (
        "_attempt",
        "_attempt_attributes",
        "_attempt_started",
        "_finish_reason",
        "_first_chunk",
        "_metric_attributes",
        "_operation",
        "_output",
        "_recorder",
        "_response_id",
        "_response_model",
        "_started",
        "_streaming",
        "_usage",
    )

    def __init__(
        self,
        recorder: Recorder,
        operation: Operation,
        body: Mapping[str, object] | None,
        model: str | None,
        parent: Context | None,
    ) -> None:
        self._recorder = recorder
        self._operation = operation
        self._attempt: Span | None = None
        self._attempt_attributes: dict[str, AttributeValue] = {}
        self._attempt_started = 0.0
        self._response_id: str | None = None
        self._response_model: str | None = None
        self._finish_reason: str | None = None
        self._usage: tuple[int, int] | None = None
        self._first_chunk = False
        self._output: list[str] | None = None
        self._streaming = False
        attributes: dict[str, AttributeValue] = {n.OPERATION: operation.name}
        metric_attributes: dict[str, AttributeValue] = {n.OPERATION: operation.name}
        name = operation.name
        if operation.genai:
            body = body or {}
            requested = body.get("model")
            if isinstance(requested, str):
                model = requested
            attributes[n.GEN_AI_OPERATION_NAME] = operation.name
            attributes[n.GEN_AI_PROVIDER_NAME] = n.PROVIDER
            allocation_id = body.get("allocation_id")
            if isinstance(allocation_id, str):
                attributes[n.ALLOCATION_ID] = allocation_id
            if model:
                attributes[n.GEN_AI_REQUEST_MODEL] = model
                name = f"{operation.name} {model}"
            _copy(body, "max_tokens", int, attributes, n.GEN_AI_REQUEST_MAX_TOKENS)
            _copy(body, "temperature", float, attributes, n.GEN_AI_REQUEST_TEMPERATURE)
            stop = body.get("stop")
            if isinstance(stop, str):
                attributes[n.GEN_AI_REQUEST_STOP_SEQUENCES] = [stop]
            elif isinstance(stop, list) and all(isinstance(item, str) for item in stop):
                attributes[n.GEN_AI_REQUEST_STOP_SEQUENCES] = stop
            if body.get("stream") is True:
                attributes[n.GEN_AI_REQUEST_STREAM] = True
                self._streaming = True
            prompt = body.get("prompt")
            if isinstance(prompt, str) and recorder.capture_content():
                attributes[n.GEN_AI_INPUT_MESSAGES] = _messages("user", redact(prompt))
                self._output = []
            metric_attributes = {
                n.GEN_AI_OPERATION_NAME: operation.name,
                n.GEN_AI_PROVIDER_NAME: n.PROVIDER,
            }
            if model:
                metric_attributes[n.GEN_AI_REQUEST_MODEL] = model
        self._metric_attributes = metric_attributes
        span, context = start(recorder.tracer, name, SpanKind.CLIENT, attributes, parent)
        super().__init__(span, context)
        self._started = time.perf_counter()

    # Attempts

    def attempt_started(self, index: int, request: httpx.Request) -> None:
        """Start the attempt's HTTP client span."""
        if self._ended:
            return
        url = request.url
        port = url.port or _DEFAULT_PORTS.get(url.scheme, 80)
        if n.SERVER_ADDRESS not in self._metric_attributes:
            self._metric_attributes[n.SERVER_ADDRESS] = url.host
            self._metric_attributes[n.SERVER_PORT] = port
            self._span.set_attributes({n.SERVER_ADDRESS: url.host, n.SERVER_PORT: port})
        template = self._operation.template
        metric_attributes: dict[str, AttributeValue] = {
            n.HTTP_REQUEST_METHOD: request.method,
            n.SERVER_ADDRESS: url.host,
            n.SERVER_PORT: port,
            n.URL_TEMPLATE: template,
        }
        attributes = dict(metric_attributes)
        attributes[n.URL_FULL] = url_full(url)
        if index:
            attributes[n.HTTP_REQUEST_RESEND_COUNT] = index
        self._attempt, _ = start(
            self._recorder.tracer,
            f"{request.method} {template}",
            SpanKind.CLIENT,
            attributes,
            self._context,
        )
        self._attempt_attributes = metric_attributes
        self._attempt_started = time.perf_counter()

    def attempt_ended(self, outcome: int | BaseException) -> None:
        """End the attempt's span with its status code or error; record its duration."""
        span, self._attempt = self._attempt, None
        if span is None:
            return
        attributes = self._attempt_attributes
        if isinstance(outcome, int):
            span.set_attribute(n.HTTP_RESPONSE_STATUS_CODE, outcome)
            attributes[n.HTTP_RESPONSE_STATUS_CODE] = outcome
            if outcome >= 400:
                attributes[n.ERROR_TYPE] = mark_failed(span, str(outcome))
        else:
            attributes[n.ERROR_TYPE] = mark_failed(span, outcome)
        span.end()
        elapsed = time.perf_counter() - self._attempt_started
        self._recorder.http_duration.record(elapsed, attributes)

    def retrying(self, wait: float, error: BaseException) -> None:
        """Note the retry on the call's span and count it."""
        if self._ended:
            return
        kind = error_type(error)
        self._span.add_event(n.EVENT_RETRY, {n.RETRY_WAIT: wait, n.ERROR_TYPE: kind})
        self._recorder.retries.add(1, {n.OPERATION: self._operation.name, n.ERROR_TYPE: kind})

    # Outcomes

    def succeeded(self, result: object = None) -> None:
        """End the call with ``result`` (a stream's span waits for ``stream_ended``)."""
        if self._ended:
            return
        if self._streaming:
            extensions = getattr(result, "extensions", None)
            if isinstance(extensions, dict):
                extensions[STREAM_TRACE] = self
            return
        if self._operation.genai:
            self._response_id = getattr(result, "id", None)
            self._response_model = getattr(result, "model", None)
            self._finish_reason = getattr(result, "finish_reason", None)
            usage = getattr(result, "usage", None)
            if usage is not None:
                self._usage = (usage.input_tokens, usage.output_tokens)
            text = getattr(result, "text", None)
            if self._output is not None and isinstance(text, str):
                self._output.append(text)
        self._finish(None)

    def failed(self, error: BaseException) -> None:
        """End the call (and any attempt still open) with ``error``."""
        if self._ended:
            return
        if self._attempt is not None:
            self.attempt_ended(error)
        self._finish(error)

    def chunk(self, chunk: InferenceChunk) -> None:
        """Take what a stream's chunk says; time the first one."""
        if self._ended:
            return
        if not self._first_chunk:
            self._first_chunk = True
            elapsed = time.perf_counter() - self._started
            self._span.set_attribute(n.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK, elapsed)
            self._recorder.time_to_first_chunk.record(elapsed, self._metric_attributes)
        self._response_id = chunk.id
        if self._output is not None:
            self._output.append(chunk.delta)
        if chunk.finish_reason is not None:
            self._finish_reason = chunk.finish_reason
        if chunk.usage is not None:
            self._usage = (chunk.usage.input_tokens, chunk.usage.output_tokens)

    def stream_ended(self) -> None:
        """End a stream's call span with what its chunks said."""
        if self._streaming:
            self._streaming = False
            self._finish(None)

    def _finish(self, error: BaseException | None) -> None:
        if self._ended:
            return
        self._streaming = False
        span = self._span
        attributes = self._metric_attributes
        if self._operation.genai:
            self._describe_response(span, attributes)
        if error is not None:
            attributes[n.ERROR_TYPE] = error_type(error)
        self.end(error)
        if not self._operation.genai:
            return
        recorder = self._recorder
        recorder.operation_duration.record(time.perf_counter() - self._started, attributes)
        if self._usage is not None:
            input_tokens, output_tokens = self._usage
            attributes.pop(n.ERROR_TYPE, None)
            recorder.token_usage.record(input_tokens, {**attributes, n.GEN_AI_TOKEN_TYPE: "input"})
            recorder.token_usage.record(
                output_tokens, {**attributes, n.GEN_AI_TOKEN_TYPE: "output"}
            )

    def _describe_response(self, span: Span, attributes: dict[str, AttributeValue]) -> None:
        if self._response_id is not None:
            span.set_attribute(n.GEN_AI_RESPONSE_ID, self._response_id)
        if self._response_model is not None:
            span.set_attribute(n.GEN_AI_RESPONSE_MODEL, self._response_model)
            attributes[n.GEN_AI_RESPONSE_MODEL] = self._response_model
        if self._finish_reason is not None:
            span.set_attribute(n.GEN_AI_RESPONSE_FINISH_REASONS, [self._finish_reason])
        if self._usage is not None:
            span.set_attribute(n.GEN_AI_USAGE_INPUT_TOKENS, self._usage[0])
            span.set_attribute(n.GEN_AI_USAGE_OUTPUT_TOKENS, self._usage[1])
        if self._output is not None:
            text = redact("".join(self._output))
            span.set_attribute(
                n.GEN_AI_OUTPUT_MESSAGES, _messages("assistant", text, self._finish_reason)
            )


def _copy(
    body: Mapping[str, object],
    key: str,
    kind: type[int] | type[float],
    into: dict[str, AttributeValue],
    name: str,
) -> None:
    value = body.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        into[name] = kind(value)
