"""Check recorded HTTP exchanges against ``docs/openapi.yaml``, the wire contract.

``check_exchanges`` takes what an emulator logged (``Emulator.exchanges``) and asserts that
every answer is one the contract allows: a status the operation declares (or 404/405 from the
router), a body that validates against the schema declared for that status and media type (an
event stream event by event, ending in ``[DONE]``), the declared headers (``x-request-id``
always, ``Retry-After`` on 429 and on 503 ``capacity_exhausted``), a matching ``Content-Type``,
an error ``request_id`` equal to the ``x-request-id`` header, and a streamed answer exactly when
``stream: true`` was asked. Exchanges with an injected fault or a dropped connection are
skipped: they are broken on purpose.

Exchanges on the OpenAI-compatible paths are checked against the OpenAI API description
instead (``tests/openai/_spec.py``).

``check_response`` checks one response on its own. The spec is loaded once and each schema is
compiled into a validator once, so checking thousands of exchanges stays cheap.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from hostedai_harpoon.testing._openai import is_openai_path
from tests.openai._spec import check_openai_exchange

if TYPE_CHECKING:
    from referencing._core import Resolver  # referencing exports no public name for it

__all__ = ["SPEC_PATH", "ConformanceError", "RecordedExchange", "check_exchanges", "check_response"]

SPEC_PATH = Path(__file__).resolve().parent.parent / "docs" / "openapi.yaml"

# Schemas in the spec refer to each other as "#/components/...": registering the whole document
# under one base URI lets those references resolve from any schema we compile.
_SPEC_URI = "https://hostedai-harpoon.invalid/openapi.yaml"
_SSE_DONE = "[DONE]"
_JSON = "application/json"
_SSE = "text/event-stream"
_BODY_PREVIEW = 300
_MAX_REPORTED = 20


class RecordedExchange(Protocol):
    """What the checker reads from one logged exchange (``hostedai_harpoon.testing.Exchange``)."""

    @property
    def method(self) -> str: ...
    @property
    def path(self) -> str: ...
    @property
    def query(self) -> str: ...
    @property
    def request_headers(self) -> Mapping[str, str]: ...
    @property
    def request_body(self) -> bytes: ...
    @property
    def status(self) -> int | None: ...
    @property
    def response_headers(self) -> Mapping[str, str]: ...
    @property
    def response_body(self) -> bytes: ...
    @property
    def fault(self) -> str | None: ...


class ConformanceError(AssertionError):
    """A response the wire contract does not allow."""


@dataclass(frozen=True, slots=True)
class _HeaderRule:
    name: str
    required: bool
    validator: Draft202012Validator


@dataclass(frozen=True, slots=True)
class _ResponseRule:
    """One documented response: its headers and, per media type, its body validator."""

    headers: tuple[_HeaderRule, ...]
    content: Mapping[str, Draft202012Validator]


@dataclass(frozen=True, slots=True)
class _Route:
    template: str
    pattern: re.Pattern[str]
    operations: Mapping[str, Mapping[int, _ResponseRule]]


@dataclass(frozen=True, slots=True)
class _Contract:
    """The spec compiled for checking: routes, generic answers and the SSE event schemas."""

    routes: tuple[_Route, ...]
    # Answers the contract allows although no operation lists them (routing, auth, throttling).
    unknown_path: Mapping[int, _ResponseRule]
    unknown_method: Mapping[int, _ResponseRule]
    misrouted: Mapping[int, _ResponseRule]
    stream_event: Draft202012Validator
    stream_final: Draft202012Validator


class _Compiler:
    """Turns spec locations into validators, each compiled once."""

    def __init__(self, spec: Mapping[str, Any]) -> None:
        self.spec = spec
        resource = Resource.from_contents(spec, default_specification=DRAFT202012)
        self._registry: Registry[Any] = Registry().with_resource(_SPEC_URI, resource)
        self._validators: dict[str, Draft202012Validator] = {}

    def resolve(self, pointer: str) -> tuple[Any, str]:
        """The object at ``pointer``, following local ``$ref``s; also where it really lives."""
        node: Any = self.spec
        for token in pointer.lstrip("/").split("/") if pointer else ():
            key = token.replace("~1", "/").replace("~0", "~")
            node = node[int(key)] if isinstance(node, list) else node[key]
        if isinstance(node, Mapping) and "$ref" in node:
            ref = node["$ref"]
            if not ref.startswith("#/"):
                raise ValueError(f"only local references are supported, not {ref!r}")
            return self.resolve(ref[1:])
        return node, pointer

    def validator(self, pointer: str) -> Draft202012Validator:
        """A validator for the schema at ``pointer`` (JSON pointer into the spec)."""
        found = self._validators.get(pointer)
        if found is None:
            resolver = self._registry.resolver(base_uri=_SPEC_URI)
            schema = _inline({"$ref": f"#{pointer}"}, resolver)
            found = Draft202012Validator(schema, registry=self._registry)
            self._validators[pointer] = found
        return found

    def response(self, pointer: str) -> _ResponseRule:
        """The documented response at ``pointer``."""
        definition, pointer = self.resolve(pointer)
        headers = []
        for name in definition.get("headers", {}):
            header_pointer = f"{pointer}/headers/{_escape(name)}"
            header, header_pointer = self.resolve(header_pointer)
            headers.append(
                _HeaderRule(
                    name=name.lower(),
                    required=bool(header.get("required", False)),
                    validator=self.validator(f"{header_pointer}/schema"),
                )
            )
        content = {
            media_type: self.validator(f"{pointer}/content/{_escape(media_type)}/schema")
            for media_type in definition.get("content", {})
        }
        return _ResponseRule(headers=tuple(headers), content=content)


# Keywords whose values are data, not schemas: a "$ref" inside them is not a reference.
_DATA_KEYWORDS = frozenset({"const", "default", "enum", "example", "examples"})


def _inline(schema: Any, resolver: Resolver[Any]) -> Any:
    """``schema`` with every ``$ref`` replaced by what it names (the spec has no cycles).

    Validating then never looks a reference up, which makes it about twice as fast.
    """
    if isinstance(schema, list):
        return [_inline(item, resolver) for item in schema]
    if not isinstance(schema, dict):
        return schema
    inlined = {
        key: value if key in _DATA_KEYWORDS else _inline(value, resolver)
        for key, value in schema.items()
        if key != "$ref"
    }
    if "$ref" not in schema:
        return inlined
    resolved = resolver.lookup(schema["$ref"])
    target = _inline(resolved.contents, resolved.resolver)
    return {"allOf": [target], **inlined} if inlined else target


def _escape(token: str) -> str:
    return token.replace("~", "~0").replace("/", "~1")


def _route_pattern(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{[^}/]+\})", template)
    regex = "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts)
    return re.compile(f"^{regex}$")


@functools.cache
def _contract() -> _Contract:
    spec = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
    compiler = _Compiler(spec)
    routes = []
    for template, path_item in spec["paths"].items():
        operations: dict[str, dict[int, _ResponseRule]] = {}
        for method, operation in path_item.items():
            if method in ("parameters", "summary", "description", "servers"):
                continue
            base = f"/paths/{_escape(template)}/{method}/responses"
            operations[method.upper()] = {
                int(status): compiler.response(f"{base}/{status}")
                for status in operation["responses"]
            }
        routes.append(_Route(template, _route_pattern(template), operations))
    # A literal path beats a template that would also match it.
    routes.sort(key=lambda route: route.template.count("{"))

    def shared(name: str) -> _ResponseRule:
        return compiler.response(f"/components/responses/{name}")

    route_not_found, method_not_allowed = shared("RouteNotFound"), shared("MethodNotAllowed")
    # Auth may be checked before routing, and any request may be throttled or fail.
    anywhere = {
        401: shared("Unauthorized"),
        429: shared("RateLimited"),
        500: shared("InternalError"),
        502: shared("BadGateway"),
        503: shared("ServiceUnavailable"),
        504: shared("GatewayTimeout"),
    }
    return _Contract(
        routes=tuple(routes),
        unknown_path={404: route_not_found, **anywhere},
        unknown_method={405: method_not_allowed, **anywhere},
        misrouted={404: route_not_found, 405: method_not_allowed},
        stream_event=compiler.validator("/components/schemas/InferenceStreamEvent"),
        stream_final=compiler.validator("/components/schemas/InferenceStreamFinal"),
    )


def _find_rule(contract: _Contract, method: str, path: str, status: int) -> _ResponseRule:
    """The documented response for this answer; fails when the contract has none."""
    for route in contract.routes:
        if not route.pattern.match(path):
            continue
        responses = route.operations.get(method)
        if responses is None:
            if status in contract.unknown_method:
                return contract.unknown_method[status]
            raise ConformanceError(
                f"{method} is not an operation of {route.template}: expected 405 "
                f"method_not_allowed, got {status}"
            )
        if status in responses:
            return responses[status]
        # Routing errors may reach any operation (e.g. an encoded '/' inside a path parameter).
        if status in contract.misrouted:
            return contract.misrouted[status]
        raise ConformanceError(
            f"status {status} is not documented for {method} {route.template} "
            f"(documented: {sorted(responses)})"
        )
    if status in contract.unknown_path:
        return contract.unknown_path[status]
    raise ConformanceError(
        f"{path} is not a path of the API: expected 404 route_not_found, got {status}"
    )


def _validate(validator: Draft202012Validator, instance: Any, what: str) -> None:
    if validator.is_valid(instance):
        return
    error = best_match(validator.iter_errors(instance))
    where = "/".join(str(part) for part in error.absolute_path) or "(root)"
    raise ConformanceError(f"{what} breaks the schema at {where}: {error.message}")


def _media_type(headers: Mapping[str, str]) -> str | None:
    value = headers.get("content-type")
    if value is None:
        return None
    return value.split(";", 1)[0].strip().lower()


def _stream_payloads(body: bytes, *, truncated: bool) -> list[str]:
    """The ``data`` of each complete event of a server-sent event stream."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConformanceError(f"event stream is not UTF-8: {exc}") from None
    blocks = re.split(r"\r\n\r\n|\n\n|\r\r", text)
    # What follows the last blank line is an unfinished event: nothing, unless cut short.
    if blocks[-1].strip() and not truncated:
        raise ConformanceError("event stream ends inside an event (no blank line after it)")
    payloads = []
    for block in blocks[:-1]:
        lines = re.split(r"\r\n|\n|\r", block)
        data = [line[5:].removeprefix(" ") for line in lines if line.startswith("data:")]
        if data:
            payloads.append("\n".join(data))
    return payloads


def _check_stream(contract: _Contract, body: bytes, *, truncated: bool) -> None:
    """An inference stream: delta events, one final event, then ``data: [DONE]``.

    A ``truncated`` stream (the client stopped reading) need only be a valid beginning.
    """
    payloads = _stream_payloads(body, truncated=truncated)
    done = bool(payloads) and payloads[-1] == _SSE_DONE
    if not truncated and not done:
        raise ConformanceError(f"event stream does not end with 'data: {_SSE_DONE}'")
    events = []
    for index, payload in enumerate(payloads[:-1] if done else payloads):
        try:
            events.append(json.loads(payload))
        except json.JSONDecodeError:
            raise ConformanceError(
                f"event #{index} is not JSON: {payload[:_BODY_PREVIEW]!r}"
            ) from None
    if done and not events:
        raise ConformanceError(f"event stream has no final event before {_SSE_DONE}")
    for index, event in enumerate(events):
        if index < len(events) - 1:
            _validate(contract.stream_event, event, f"event #{index}")
        elif done or (isinstance(event, dict) and "finish_reason" in event):
            _validate(contract.stream_final, event, f"final event #{index}")
        else:
            _validate(contract.stream_event, event, f"event #{index}")
    ids = {event["id"] for event in events}
    if len(ids) > 1:
        raise ConformanceError(f"events of one stream carry different ids: {sorted(ids)}")


def _check_body(
    contract: _Contract,
    rule: _ResponseRule,
    headers: Mapping[str, str],
    body: bytes,
    *,
    truncated: bool,
) -> None:
    if not rule.content:
        if body:
            raise ConformanceError(f"expected no body, got {body[:_BODY_PREVIEW]!r}")
        return
    media_type = _media_type(headers)
    if media_type is None or media_type not in rule.content:
        raise ConformanceError(
            f"Content-Type {headers.get('content-type')!r} is not one of {sorted(rule.content)}"
        )
    if media_type == _SSE:
        _check_stream(contract, body, truncated=truncated)
        return
    try:
        document = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ConformanceError(f"body is not JSON: {body[:_BODY_PREVIEW]!r}") from None
    _validate(rule.content[media_type], document, "body")
    error = document.get("error") if isinstance(document, dict) else None
    if isinstance(error, dict):
        if error.get("request_id") != headers.get("x-request-id"):
            raise ConformanceError(
                f"error.request_id {error.get('request_id')!r} is not the x-request-id header "
                f"{headers.get('x-request-id')!r}"
            )
        if error.get("code") == "capacity_exhausted" and "retry-after" not in headers:
            raise ConformanceError("503 capacity_exhausted without a Retry-After header")


def check_response(
    method: str,
    path: str,
    status: int,
    headers: Mapping[str, str],
    body: bytes,
    *,
    truncated: bool = False,
) -> None:
    """Assert that one response is allowed by the contract for ``method path``.

    ``path`` is the decoded request path, without the query string. ``truncated`` says the
    client stopped reading an event stream before its end, so the body need only be a valid
    beginning. Raises ``ConformanceError`` (an ``AssertionError``)
    saying what broke.
    """
    contract = _contract()
    headers = {name.lower(): value for name, value in headers.items()}
    rule = _find_rule(contract, method.upper(), path, status)
    for header in rule.headers:
        value = headers.get(header.name)
        if value is None:
            if header.required:
                raise ConformanceError(f"required header {header.name} is missing")
            continue
        _validate(header.validator, value, f"header {header.name}")
    _check_body(contract, rule, headers, body, truncated=truncated)


def _check_request_coherence(exchange: RecordedExchange) -> None:
    """What the request asked for, the answer must honour (beyond what one response shows)."""
    if exchange.method.upper() == "POST" and exchange.path == "/v1/inference":
        if exchange.status != 200:
            return
        try:
            request = json.loads(exchange.request_body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return
        streamed = isinstance(request, dict) and request.get("stream") is True
        expected = _SSE if streamed else _JSON
        if _media_type(exchange.response_headers) != expected:
            raise ConformanceError(f"a request with stream={streamed} must be answered {expected}")
    if "idempotent-replayed" in exchange.response_headers and not any(
        name.lower() == "idempotency-key" for name in exchange.request_headers
    ):
        raise ConformanceError("Idempotent-Replayed on a request without an Idempotency-Key")


def _describe(index: int, exchange: RecordedExchange) -> str:
    query = f"?{exchange.query}" if exchange.query else ""
    body = exchange.response_body[:_BODY_PREVIEW]
    return (
        f"exchange #{index}: {exchange.method} {exchange.path}{query} -> {exchange.status} "
        f"(request body {exchange.request_body[:_BODY_PREVIEW]!r}, response body {body!r})"
    )


# A delayed answer is still the real answer; every other fault changes what was sent.
_BODY_KEEPING_FAULTS = frozenset({None, "latency"})


def _is_unplanned_server_error(exchange: RecordedExchange) -> bool:
    status = exchange.status
    if status is None or status < 500:
        return False
    return not (status == 503 and b'"capacity_exhausted"' in exchange.response_body)


def check_exchanges(exchanges: Iterable[RecordedExchange]) -> None:
    """Assert that every logged exchange conforms to the contract.

    Exchanges with an injected fault that changed the answer, or without a status (the
    connection dropped), are skipped; a 5xx nobody injected (other than a full pool) and an
    exchange the emulator crashed on always fail; a stream the client closed early
    (``aborted``, when the exchange has it) need only be a valid beginning. Every failure is
    reported, up to twenty, in one ``ConformanceError``.
    """
    failures = []
    for index, exchange in enumerate(exchanges):
        if exchange.fault == "emulator_bug":
            failures.append(f"{_describe(index, exchange)}\n    the emulator crashed on it")
            continue
        if is_openai_path(exchange.path):  # the OpenAI API's own description says these
            try:
                check_openai_exchange(exchange)
            except AssertionError as exc:
                failures.append(f"{_describe(index, exchange)}\n    {exc}")
            continue
        if exchange.fault not in _BODY_KEEPING_FAULTS or exchange.status is None:
            continue
        if exchange.fault is None and _is_unplanned_server_error(exchange):
            failures.append(
                f"{_describe(index, exchange)}\n    a {exchange.status} nobody injected: "
                "the emulator answers 5xx only for a full pool or an injected fault"
            )
            continue
        try:
            check_response(
                exchange.method,
                exchange.path,
                exchange.status,
                exchange.response_headers,
                exchange.response_body,
                truncated=bool(getattr(exchange, "aborted", False)),
            )
            _check_request_coherence(exchange)
        except ConformanceError as exc:
            failures.append(f"{_describe(index, exchange)}\n    {exc}")
    if failures:
        shown = "\n".join(failures[:_MAX_REPORTED])
        more = len(failures) - _MAX_REPORTED
        extra = f"\n... and {more} more" if more > 0 else ""
        raise ConformanceError(
            f"{len(failures)} exchange(s) break docs/openapi.yaml:\n{shown}{extra}"
        )
