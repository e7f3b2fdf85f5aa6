"""The OpenAI-compatible API (what vLLM, SGLang, llama.cpp and TGI serve), operation by
operation: ``POST /v1/chat/completions``, ``POST /v1/completions``, ``GET /v1/models``, and
how their answers and event streams are read into this package's values.

The second dialect ``_api.py`` foresees: requests are ``Call``s for the same planner, so
retries, the breaker, the deadline, bounded reading and telemetry are the ones every call
has. Answers become the same ``InferenceResult`` and ``InferenceChunk`` values; the server's
``id`` is kept, its ``usage`` read into ``Usage``. OpenAI servers report no server-side
latency: ``latency`` is 0.0 on their results.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

import httpx

from .._checks import (
    check_max_tokens,
    check_optional_text,
    check_stop,
    check_temperature,
    check_text,
)
from .._config import API_PREFIX, is_loopback
from .._exceptions import ConfigurationError
from .._models import FinishReason, InferenceChunk, InferenceResult, InvalidPayload, Usage
from .._telemetry import Operation
from .._telemetry._names import OP_CHAT, OP_TEXT_COMPLETION
from ._steps import Call

__all__ = [
    "CHAT",
    "COMPLETIONS",
    "HOSTEDAI",
    "INFERENCE_PROTOCOLS",
    "Inference",
    "StreamEvents",
    "check_endpoint",
    "check_inference",
    "check_messages",
    "infer",
    "list_models",
    "stream",
]

Inference = Literal["hostedai", "openai", "openai-completions"]
"""How a model is reached: the proof of concept's ``POST /v1/inference`` on the control
plane (``"hostedai"``), or the OpenAI-compatible API at a server's root: chat completions
(``"openai"``) or the plain (legacy) completions (``"openai-completions"``)."""

HOSTEDAI: Final = "hostedai"
CHAT: Final = "openai"
COMPLETIONS: Final = "openai-completions"
INFERENCE_PROTOCOLS: Final = (HOSTEDAI, CHAT, COMPLETIONS)

_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
_FINISH_REASONS = frozenset({"stop", "length"})

_CHAT_OPERATION = Operation(OP_CHAT, "/v1/chat/completions", genai=True)
_COMPLETION_OPERATION = Operation(OP_TEXT_COMPLETION, "/v1/completions", genai=True)
_MODELS_OPERATION = Operation("list_models", "/v1/models")


def check_inference(value: object, name: str = "inference") -> Inference:
    """One of ``INFERENCE_PROTOCOLS``, or a ``ConfigurationError`` naming the argument."""
    if value not in INFERENCE_PROTOCOLS or type(value) is not str:
        shown = ", ".join(repr(protocol) for protocol in INFERENCE_PROTOCOLS)
        raise ConfigurationError(f"{name} must be one of {shown}, got {value!r}")
    return value


def check_endpoint(
    raw: object, what: str, *, keyed: bool, allow_insecure_http: bool
) -> tuple[str | None, str]:
    """``(root, "")`` for a usable endpoint, else ``(None, why)`` where ``why`` says what is
    wrong with ``what`` (never its credentials)."""
    return _endpoint(raw, keyed=keyed, allow_insecure_http=allow_insecure_http, what=what)


def _endpoint(
    raw: object, *, keyed: bool, allow_insecure_http: bool, what: str = "the endpoint"
) -> tuple[str | None, str]:
    if raw is None:
        return None, f"{what} is missing"
    if type(raw) is not str or not raw.strip():
        return None, f"{what} must be a non-empty URL string, got {type(raw).__name__}"
    try:
        url = httpx.URL(raw.strip())
    except (httpx.InvalidURL, TypeError, UnicodeError) as exc:
        return None, f"{what} is not a valid URL ({type(exc).__name__})"
    if url.userinfo:
        return None, f"{what} must not carry credentials in the URL; pass api_key= instead"
    if url.scheme not in ("http", "https") or not url.host:
        return None, f"{what} must be an absolute http:// or https:// URL, got {url.scheme!r}"
    if url.scheme == "http" and keyed and not allow_insecure_http and not is_loopback(url.host):
        return None, (
            f"refusing plain http:// to {url.host!r} for {what}: the API key would cross the "
            "network unencrypted. Use https://, or pass allow_insecure_http=True if you mean it."
        )
    root = str(url.copy_with(query=None, fragment=None)).rstrip("/")
    return root.removesuffix(API_PREFIX), ""


def check_messages(messages: object) -> list[dict[str, str]]:
    """Chat messages: a non-empty list of ``{"role": ..., "content": str}``."""
    if not isinstance(messages, Sequence) or isinstance(messages, str | bytes) or not messages:
        raise ConfigurationError(
            'messages must be a non-empty list of {"role": ..., "content": ...} dicts'
        )
    checked = []
    for index, message in enumerate(messages):
        if not isinstance(message, Mapping):
            raise ConfigurationError(f"messages[{index}] must be a dict, got {_kind(message)}")
        role = message.get("role")
        if role not in _ROLES:
            raise ConfigurationError(
                f"messages[{index}]['role'] must be one of {', '.join(sorted(_ROLES))}, "
                f"got {role!r}"
            )
        content = message.get("content")
        if type(content) is not str:
            raise ConfigurationError(
                f"messages[{index}]['content'] must be a string, got {_kind(content)}"
            )
        check_text(content or " ", f"messages[{index}]['content']")
        checked.append({"role": role, "content": content})
    return checked


def _body(
    inference: str,
    prompt: str | None,
    messages: object,
    model: str | None,
    max_tokens: int | None,
    temperature: float | None,
    stop: str | list[str] | None,
) -> dict[str, object]:
    if check_optional_text(model, "model") is None:
        raise ConfigurationError(
            "model is required by the OpenAI-compatible API: pass model= (the name the "
            "server serves, as GET /v1/models lists it)"
        )
    body: dict[str, object] = {"model": model}
    if inference == COMPLETIONS:
        if messages is not None:
            raise ConfigurationError(
                "messages= needs chat completions (inference='openai'); plain completions "
                "(inference='openai-completions') take a prompt"
            )
        body["prompt"] = check_text(prompt, "prompt")
    elif messages is not None:
        if prompt is not None:
            raise ConfigurationError("pass prompt or messages, not both")
        body["messages"] = check_messages(messages)
    else:
        body["messages"] = [{"role": "user", "content": check_text(prompt, "prompt")}]
    if check_max_tokens(max_tokens) is not None:
        body["max_tokens"] = max_tokens
    if check_temperature(temperature) is not None:
        body["temperature"] = temperature
    checked_stop = check_stop(stop)
    if checked_stop is not None:
        body["stop"] = checked_stop
    return body


def _path_and_operation(inference: str) -> tuple[str, Operation]:
    if inference == COMPLETIONS:
        return "/v1/completions", _COMPLETION_OPERATION
    return "/v1/chat/completions", _CHAT_OPERATION


def infer(
    inference: str,
    prompt: str | None,
    messages: object,
    model: str | None,
    max_tokens: int | None,
    temperature: float | None,
    stop: str | list[str] | None,
    allocation_id: str,
) -> Call[InferenceResult]:
    """``POST /v1/chat/completions`` (or ``/v1/completions``). Not idempotent, as
    ``/v1/inference`` is not: only clear failures are retried."""
    body = _body(inference, prompt, messages, model, max_tokens, temperature, stop)
    path, operation = _path_and_operation(inference)
    parse = _parse_chat if inference == CHAT else _parse_completion
    return Call(
        "POST",
        path,
        functools.partial(parse, allocation_id),
        operation=operation,
        json=body,
        idempotent=False,
        model=model,
    )


def inference_call(
    inference: str,
    streaming: bool,
    prompt: str | None,
    messages: object,
    model: str | None,
    default_model: str | None,
    max_tokens: int | None,
    temperature: float | None,
    stop: str | list[str] | None,
    allocation_id: str = "",
) -> Call[Any]:
    """``stream`` or ``infer``, ``model`` left out (``None``) meaning ``default_model`` (the
    lease's or the endpoint's); an empty one is refused, never taken for the default."""
    chosen = default_model if model is None else model
    args = (inference, prompt, messages, chosen, max_tokens, temperature)
    return stream(*args, stop) if streaming else infer(*args, stop, allocation_id)


def stream(
    inference: str,
    prompt: str | None,
    messages: object,
    model: str | None,
    max_tokens: int | None,
    temperature: float | None,
    stop: str | list[str] | None,
) -> Call[httpx.Response]:
    """The same with ``stream: true`` and the usage asked for in the last event: the value
    is the unread response (read it with ``StreamEvents``)."""
    body = _body(inference, prompt, messages, model, max_tokens, temperature, stop)
    body["stream"] = True
    body["stream_options"] = {"include_usage": True}
    path, operation = _path_and_operation(inference)
    return Call(
        "POST",
        path,
        None,
        operation=operation,
        json=body,
        headers={"accept": "text/event-stream"},
        idempotent=False,
        stream=True,
        model=model,
    )


def list_models() -> Call[list[str]]:
    """``GET /v1/models``: the ids of the models the server serves."""
    return Call("GET", "/v1/models", _parse_models, operation=_MODELS_OPERATION)


# Reading answers -------------------------------------------------------------------------


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


def _refuse_error(data: Mapping[str, Any]) -> None:
    """An ``error`` object where an answer should be (some servers answer 200 with one)."""
    error = data.get("error")
    if error is not None and "choices" not in data:
        message = error.get("message") if isinstance(error, Mapping) else error
        raise InvalidPayload(f"the server answered with an error object: {str(message)[:200]}")


def _object(data: object, what: str) -> Mapping[str, Any]:
    if type(data) is not dict:
        raise InvalidPayload(f"{what} is not a JSON object")
    _refuse_error(data)
    return data


def _string(data: Mapping[str, Any], key: str, what: str) -> str:
    value = data.get(key)
    if type(value) is not str:
        raise InvalidPayload(f"field {key!r} of {what} must be a string, got {_kind(value)}")
    return value


def _text(data: Mapping[str, Any], key: str, what: str) -> str:
    """A text field that may be null or absent (read as empty)."""
    value = data.get(key)
    if value is None:
        return ""
    if type(value) is not str:
        raise InvalidPayload(f"field {key!r} of {what} must be a string, got {_kind(value)}")
    return value


def _usage(data: object) -> Usage:
    if type(data) is not dict:
        raise InvalidPayload(f"field 'usage' must be an object, got {_kind(data)}")
    tokens = []
    for key in ("prompt_tokens", "completion_tokens"):
        value = data.get(key)
        if type(value) is not int or value < 0:
            raise InvalidPayload(
                f"field 'usage.{key}' must be a non-negative integer, got {_kind(value)}"
            )
        tokens.append(value)
    return Usage(input_tokens=tokens[0], output_tokens=tokens[1])


def _finish_reason(choice: Mapping[str, Any]) -> FinishReason:
    value = choice.get("finish_reason")
    if value not in _FINISH_REASONS:
        raise InvalidPayload(
            f"finish_reason {str(value)[:40]!r} is not one this package reads (stop, length)"
        )
    return value  # type: ignore[no-any-return]


def _first_choice(data: Mapping[str, Any], what: str) -> Mapping[str, Any]:
    choices = data.get("choices")
    if type(choices) is not list:
        raise InvalidPayload(f"{what} has no 'choices' list (got {_kind(choices)})")
    if not choices or type(choices[0]) is not dict:
        raise InvalidPayload(f"{what} has no choice")
    return choices[0]


def _result(
    data: Mapping[str, Any],
    text: str,
    choice: Mapping[str, Any],
    allocation_id: str,
    rid: str | None,
) -> InferenceResult:
    return InferenceResult(
        id=_string(data, "id", "the answer"),
        allocation_id=allocation_id,
        model=_string(data, "model", "the answer"),
        text=text,
        finish_reason=_finish_reason(choice),
        usage=_usage(data.get("usage")),
        latency=0.0,
        request_id=rid,
    )


def _parse_chat(allocation_id: str, data: object, request_id: str | None) -> InferenceResult:
    d = _object(data, "the chat completion")
    choice = _first_choice(d, "the chat completion")
    message = choice.get("message")
    if type(message) is not dict:
        raise InvalidPayload(f"the chat completion's message is {_kind(message)}, not an object")
    text = _text(message, "content", "the message")
    return _result(d, text, choice, allocation_id, request_id)


def _parse_completion(allocation_id: str, data: object, request_id: str | None) -> InferenceResult:
    d = _object(data, "the completion")
    choice = _first_choice(d, "the completion")
    return _result(d, _text(choice, "text", "the choice"), choice, allocation_id, request_id)


def _parse_models(data: object, request_id: str | None) -> list[str]:
    d = _object(data, "the model list")
    items = d.get("data")
    if type(items) is not list:
        raise InvalidPayload("field 'data' of the model list must be a list")
    return [_string(_object(item, "a model"), "id", "a model") for item in items]


class StreamEvents:
    """Reads the events of an OpenAI-compatible stream into ``InferenceChunk``s.

    Each piece of text becomes a chunk; the last chunk (empty ``delta``) carries the
    ``finish_reason`` and, when the server honoured ``stream_options.include_usage``, the
    ``usage`` (``None`` from a server that sent none).
    """

    __slots__ = ("_chat", "_finish", "_id", "_usage")

    def __init__(self, inference: str) -> None:
        self._chat = inference != COMPLETIONS
        self._id = ""
        self._finish: FinishReason | None = None
        self._usage: Usage | None = None

    def event(self, data: object, request_id: str | None) -> list[InferenceChunk]:
        """The chunks of one event's JSON payload."""
        d = _object(data, "a stream event")
        self._id = _string(d, "id", "a stream event")
        choices = d.get("choices")
        if type(choices) is not list:
            raise InvalidPayload(f"a stream event has no 'choices' list (got {_kind(choices)})")
        chunks = []
        if choices:
            choice = choices[0]
            if type(choice) is not dict:
                raise InvalidPayload("a stream event's choice is not an object")
            if self._chat:
                delta = choice.get("delta")
                if type(delta) is not dict:
                    raise InvalidPayload(f"a chat stream event's delta is {_kind(delta)}")
                text = _text(delta, "content", "the delta")
            else:
                text = _text(choice, "text", "the choice")
            if text:
                chunks.append(InferenceChunk(id=self._id, delta=text, request_id=request_id))
            if choice.get("finish_reason") is not None:
                self._finish = _finish_reason(choice)
        if d.get("usage") is not None:
            self._usage = _usage(d["usage"])
        return chunks

    def end(self, request_id: str | None) -> list[InferenceChunk]:
        """The last chunk, once ``[DONE]`` came."""
        if self._finish is None:
            raise InvalidPayload("the stream ended without a finish_reason")
        return [
            InferenceChunk(
                id=self._id,
                delta="",
                finish_reason=self._finish,
                usage=self._usage,
                request_id=request_id,
            )
        ]
