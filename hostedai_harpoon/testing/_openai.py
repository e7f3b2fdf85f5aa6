"""The OpenAI-compatible API as vLLM serves it: ``POST /v1/chat/completions``,
``POST /v1/completions``, ``GET /v1/models``, event streams ending in ``data: [DONE]``.

Served at each ready allocation's ``endpoint`` (``{endpoint}/v1/...``) and, by
:meth:`Emulator.serve_openai`, as a standalone server at its root. Answers follow what a
vLLM server sends, within the OpenAI API description (``tests/openai/spec_fragments.yaml``
validates them); the text is the same deterministic answer ``/v1/inference`` gives.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ._inference import Completion, complete
from ._wire import Answer, Reply, Request, WireError, is_int, is_number, parse_json_object

if TYPE_CHECKING:
    from ._emulator import Emulator
    from ._state import State

__all__ = [
    "ALLOCATION_ROUTES",
    "STANDALONE_ROUTES",
    "OpenAIApi",
    "OpenAIServer",
    "is_openai_path",
    "openai_error",
]

ALLOCATION_ROUTES = (
    "/endpoints/*/v1/chat/completions",
    "/endpoints/*/v1/completions",
    "/endpoints/*/v1/models",
)
"""The OpenAI-compatible paths under an allocation's endpoint (``*``: the allocation id)."""
STANDALONE_ROUTES = ("/v1/chat/completions", "/v1/completions", "/v1/models")
"""The same paths at a standalone server's root."""

_SUFFIXES = ("/v1/chat/completions", "/v1/completions", "/v1/models")
_ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
# vLLM generates until the model stops when a request sets no limit; the emulated models'
# natural answers are shorter than this.
_NO_LIMIT = 4096


def is_openai_path(path: str) -> bool:
    """Whether ``path`` is one of the OpenAI-compatible paths (at a root or an endpoint)."""
    return path.endswith(_SUFFIXES)


def openai_error(outcome: Answer | None) -> Answer | None:
    """An error envelope of this API in OpenAI's shape: ``{"error": {"message", "type",
    "param", "code"}}`` (the request id stays in the ``x-request-id`` header)."""
    if outcome is None or outcome.status < 400 or not isinstance(outcome.payload, dict):
        return outcome
    error = outcome.payload.get("error")
    if isinstance(error, dict) and "request_id" in error:
        outcome.payload = {
            "error": {
                "message": error["message"],
                "type": error["type"],
                "param": None,
                "code": error["code"],
            }
        }
    return outcome


def _invalid(message: str) -> WireError:
    return WireError("invalid_request", message)


def _text_of(content: Any, index: int) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        for part in content
    ):
        return "".join(part["text"] for part in content)
    raise _invalid(f"messages[{index}].content must be a string or a list of text parts.")


def _prompt_of_messages(messages: Any) -> str:
    """The conversation as the model reads it (one user message: its text alone)."""
    if not isinstance(messages, list) or not messages:
        raise _invalid("'messages' must be a non-empty list.")
    lines = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in _ROLES:
            raise _invalid(f"messages[{index}] must be an object with a valid 'role'.")
        lines.append((message["role"], _text_of(message.get("content"), index)))
    if len(lines) == 1 and lines[0][0] == "user":
        return lines[0][1]
    return "\n".join(f"{role}: {text}" for role, text in lines)


def _optional(body: Mapping[str, Any], name: str, valid: Callable[[Any], bool], what: str) -> Any:
    value = body.get(name)
    if value is not None and not valid(value):
        raise _invalid(f"'{name}' must be {what}.")
    return value


def _is_stop(value: Any) -> bool:
    if isinstance(value, str):
        return True
    return isinstance(value, list) and len(value) <= 4 and all(isinstance(s, str) for s in value)


class OpenAIApi:
    """Answers the OpenAI-compatible paths, for one allocation's model or a server's models."""

    def __init__(self, state: State, latency_scale: float) -> None:
        self._state = state
        self._latency_scale = latency_scale

    def handle(self, request: Request, now: float, models: Sequence[str]) -> Answer:
        """The outcome of an OpenAI-compatible ``request`` on a server serving ``models``."""
        path = request.path
        if path.endswith("/v1/models"):
            if request.method != "GET":
                raise WireError("method_not_allowed", f"{request.method} is not allowed here.")
            data = [
                {
                    "id": model,
                    "object": "model",
                    "created": int(now),
                    "owned_by": "vllm",
                    "root": model,
                    "parent": None,
                    "max_model_len": 32768,
                }
                for model in models
            ]
            return Answer(200, {"object": "list", "data": data})
        if request.method != "POST":
            raise WireError("method_not_allowed", f"{request.method} is not allowed here.")
        return self._generate(request, now, models, chat=path.endswith("/chat/completions"))

    def _generate(
        self, request: Request, now: float, models: Sequence[str], *, chat: bool
    ) -> Answer:
        body = parse_json_object(request.body)
        model = body.get("model")
        if not isinstance(model, str):
            raise _invalid("'model' is required and must be a string.")
        if model not in models:
            raise WireError("model_not_found", f"The model `{model}` does not exist.")
        if chat:
            prompt = _prompt_of_messages(body.get("messages"))
        else:
            raw = body.get("prompt")
            if not isinstance(raw, str):
                raise _invalid("'prompt' must be a string.")
            prompt = raw
        limit = _optional(body, "max_completion_tokens", is_int, "an integer")
        limit = _optional(body, "max_tokens", is_int, "an integer") or limit
        if limit is not None and not 1 <= limit <= 32768:
            raise _invalid("'max_tokens' must be from 1 to 32768.")
        _optional(body, "temperature", lambda v: is_number(v) and 0 <= v <= 2, "from 0 to 2")
        stop = _optional(body, "stop", _is_stop, "a string or a list of at most 4 strings")
        if _optional(body, "n", is_int, "an integer") not in (None, 1):
            raise _invalid("Only n=1 is supported.")
        stream = _optional(body, "stream", lambda v: isinstance(v, bool), "a boolean")
        options = _optional(body, "stream_options", lambda v: isinstance(v, dict), "an object")
        completion = complete(
            model,
            prompt,
            limit or _NO_LIMIT,
            () if stop is None else (stop,) if isinstance(stop, str) else tuple(stop),
        )
        delay = self._latency_scale * completion.latency_ms / 1000
        answer = _Answer(self._state.new_id("chatcmpl-" if chat else "cmpl-"), now, model, chat)
        if not stream:
            return Answer(200, answer.whole(completion), delay=delay)
        usage = bool(options and options.get("include_usage") is True)
        return Answer(200, events=answer.events(completion, usage), delay=delay)


class _Answer:
    """The shapes of one answer, whole or as stream events (vLLM's fields and order)."""

    def __init__(self, answer_id: str, now: float, model: str, chat: bool) -> None:
        self._chat = chat
        self._head = {
            "id": answer_id,
            "object": ("chat.completion" if chat else "text_completion"),
            "created": int(now),
            "model": model,
        }

    def _choice(self, text: str, finish_reason: str | None, whole: bool) -> dict[str, Any]:
        choice: dict[str, Any] = {"index": 0}
        if not self._chat:
            choice["text"] = text
        elif whole:
            choice["message"] = {
                "role": "assistant",
                "content": text,
                "refusal": None,
                "tool_calls": [],
            }
        else:
            choice["delta"] = {"content": text}
        choice.update(logprobs=None, finish_reason=finish_reason, stop_reason=None)
        return choice

    def whole(self, completion: Completion) -> dict[str, Any]:
        """The answer as one JSON body."""
        return {
            **self._head,
            "choices": [self._choice(completion.text, completion.finish_reason, True)],
            "usage": _usage(completion),
        }

    def events(self, completion: Completion, usage: bool) -> list[Any]:
        """The answer as stream events: a role event (chat), a piece of text each (the last
        with the finish reason), the usage (when asked for), then ``[DONE]``."""
        head = {
            **self._head,
            "object": "chat.completion.chunk" if self._chat else "text_completion",
        }
        events: list[Any] = []
        if self._chat:
            first = self._choice("", None, False)
            first["delta"] = {"role": "assistant", "content": ""}
            del first["stop_reason"]
            events.append({**head, "choices": [first]})
        pieces = list(completion.deltas) or [""]
        for index, piece in enumerate(pieces):
            last = index == len(pieces) - 1
            choice = self._choice(piece, completion.finish_reason if last else None, False)
            if not last:
                del choice["stop_reason"]
            events.append({**head, "choices": [choice]})
        if usage:
            events.append({**head, "choices": [], "usage": _usage(completion)})
        events.append("[DONE]")
        return events


def _usage(completion: Completion) -> dict[str, int]:
    return {
        "prompt_tokens": completion.input_tokens,
        "total_tokens": completion.input_tokens + completion.output_tokens,
        "completion_tokens": completion.output_tokens,
    }


class OpenAIServer:
    """A standalone OpenAI-compatible server (a :class:`Handler` for the adapters): the
    emulator's ``/v1/chat/completions``, ``/v1/completions`` and ``/v1/models`` at the root,
    serving ``models``, with the emulator's faults, request log and keys (without
    ``api_keys``, like vLLM without ``--api-key``, it takes requests with no key)."""

    def __init__(self, emulator: Emulator, models: Sequence[str]) -> None:
        self.emulator = emulator
        self.models = tuple(models)

    def handle(self, request: Request) -> Reply:
        """Answer one request."""
        return self.emulator.handle(request, openai_models=self.models)

    def __repr__(self) -> str:
        return f"<OpenAIServer models={list(self.models)}>"
