"""Validation against the OpenAI API description: the fragments in ``spec_fragments.yaml``.

``check_openai_exchange`` checks one exchange the emulator logged on an OpenAI-compatible
path: the answer (a JSON body, every event of a stream, or an error envelope) against the
schema of its path and status, and, for an answer the server accepted, the request too.
``tests/conformance.py`` hands it every such exchange, so each test's emulator is checked.

Two readings of the description, both as OpenAI's own servers behave:

- ``nullable: true`` (OpenAPI 3.0, mixed into this 3.1 document) means "or null";
- the legacy completions stream reuses ``CreateCompletionResponse`` for its events, whose
  ``finish_reason`` is null until the last one: that one field is read as nullable there.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

__all__ = ["FRAGMENTS", "check_openai_exchange", "validator"]

FRAGMENTS = Path(__file__).resolve().parent / "spec_fragments.yaml"

_STREAM_COMPLETION = "CreateCompletionStreamEvent"
_CHECKED_FAULTS = frozenset({None, "latency", "error", "rate_limit"})


def _nullable(node: Any) -> Any:
    """``node`` with every ``nullable: true`` spelled as JSON Schema says it."""
    if isinstance(node, list):
        return [_nullable(item) for item in node]
    if not isinstance(node, dict):
        return node
    node = {key: _nullable(value) for key, value in node.items()}
    if node.pop("nullable", False) is not True:
        return node
    if "$ref" in node:
        ref = node.pop("$ref")
        return {**node, "anyOf": [{"$ref": ref}, {"type": "null"}]}
    if isinstance(node.get("type"), str):
        node["type"] = [node["type"], "null"]
    if "enum" in node and None not in node["enum"]:
        node["enum"] = [*node["enum"], None]
    return node


@functools.cache
def _components() -> dict[str, Any]:
    document = yaml.safe_load(FRAGMENTS.read_text(encoding="utf-8"))
    components: dict[str, Any] = _nullable(document["components"])
    schemas = components["schemas"]
    event = copy.deepcopy(schemas["CreateCompletionResponse"])
    finish = event["properties"]["choices"]["items"]["properties"]["finish_reason"]
    finish["type"] = [finish["type"], "null"]
    finish["enum"] = [*finish["enum"], None]
    schemas[_STREAM_COMPLETION] = event
    return components


@functools.cache
def validator(name: str) -> Draft202012Validator:
    """A validator of the schema ``name`` of the fragments."""
    schema = {"$ref": f"#/components/schemas/{name}", "components": _components()}
    return Draft202012Validator(schema)


def validate(name: str, instance: object, what: str) -> None:
    """Fail, saying what is wrong, unless ``instance`` validates against ``name``."""
    error = best_match(validator(name).iter_errors(instance))
    if error is not None:
        where = "/".join(str(part) for part in error.absolute_path) or "(root)"
        raise AssertionError(f"{what} breaks the OpenAI schema {name} at {where}: {error.message}")


def _kind(path: str) -> str:
    if path.endswith("/v1/chat/completions"):
        return "chat"
    if path.endswith("/v1/completions"):
        return "completion"
    return "models"


_SCHEMAS = {
    # kind: (request, answer, stream event)
    "chat": (
        "CreateChatCompletionRequest",
        "CreateChatCompletionResponse",
        "CreateChatCompletionStreamResponse",
    ),
    "completion": ("CreateCompletionRequest", "CreateCompletionResponse", _STREAM_COMPLETION),
    "models": (None, "ListModelsResponse", None),
}


def stream_payloads(body: bytes) -> list[str]:
    """The ``data`` of each event of a server-sent event stream."""
    blocks = re.split(r"\r\n\r\n|\n\n", body.decode("utf-8"))
    assert not blocks[-1].strip(), "the stream ends inside an event"
    payloads = []
    for block in blocks[:-1]:
        data = [
            line[5:].removeprefix(" ") for line in block.splitlines() if line.startswith("data:")
        ]
        if data:
            payloads.append("\n".join(data))
    return payloads


def check_openai_exchange(exchange: Any) -> None:
    """Assert that one logged exchange on an OpenAI-compatible path is what the OpenAI
    description allows (exchanges broken on purpose by a body fault are skipped)."""
    if exchange.fault not in _CHECKED_FAULTS or exchange.status is None:
        return
    what = f"{exchange.method} {exchange.path} -> {exchange.status}"
    assert exchange.response_headers.get("x-request-id"), f"{what}: no x-request-id"
    request_schema, answer_schema, event_schema = _SCHEMAS[_kind(exchange.path)]
    if exchange.status >= 400:
        validate("ErrorResponse", json.loads(exchange.response_body), what)
        return
    if request_schema is not None:
        validate(request_schema, json.loads(exchange.request_body), f"the request of {what}")
    content_type = exchange.response_headers.get("content-type", "")
    if not content_type.startswith("text/event-stream"):
        validate(answer_schema, json.loads(exchange.response_body), what)
        return
    assert event_schema is not None, f"{what}: a stream where none is served"
    payloads = stream_payloads(exchange.response_body)
    if not getattr(exchange, "aborted", False):
        assert payloads[-1:] == ["[DONE]"], f"{what}: the stream has no [DONE]"
        payloads = payloads[:-1]
    for index, payload in enumerate(payloads):
        validate(event_schema, json.loads(payload), f"event {index} of {what}")
