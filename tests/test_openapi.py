"""docs/openapi.yaml is a valid OpenAPI 3.1 document that says what docs/wire.md says.

The second half pins the conformance checker (tests/conformance.py): it must pass what the
contract allows and fail, naming the exchange, on what it does not.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft202012Validator
from openapi_spec_validator import validate
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.conformance import SPEC_PATH, ConformanceError, check_exchanges, check_response

WIRE_PATH = Path(__file__).resolve().parent.parent / "docs" / "wire.md"
SPEC_URI = "https://hostedai-harpoon.invalid/openapi.yaml"
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")

SPEC: dict[str, Any] = yaml.safe_load(SPEC_PATH.read_text(encoding="utf-8"))
REGISTRY: Registry[Any] = Registry().with_resource(
    SPEC_URI, Resource.from_contents(SPEC, default_specification=DRAFT202012)
)


def resolve(node: Any) -> Any:
    """Follow local ``$ref``s from ``node`` to what they name."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = SPEC
        for token in node["$ref"].removeprefix("#/").split("/"):
            target = target[token.replace("~1", "/").replace("~0", "~")]
        node = target
    return node


def operations() -> Iterator[tuple[str, str, dict[str, Any]]]:
    """Every (path, method, operation) of the document."""
    for path, item in SPEC["paths"].items():
        for method in HTTP_METHODS:
            if method in item:
                yield path, method, item[method]


def responses() -> Iterator[tuple[str, str, str, dict[str, Any]]]:
    """Every (path, method, status, resolved response) of the document."""
    for path, method, operation in operations():
        for status, response in operation["responses"].items():
            yield path, method, status, resolve(response)


def schema_validator(name: str) -> Draft202012Validator:
    """A validator for ``#/components/schemas/<name>``."""
    return Draft202012Validator(
        {"$ref": f"{SPEC_URI}#/components/schemas/{name}"}, registry=REGISTRY
    )


def wire_error_table() -> dict[int, tuple[set[str], set[str]]]:
    """docs/wire.md's error table: status -> (types, codes)."""
    table: dict[int, tuple[set[str], set[str]]] = {}
    for line in WIRE_PATH.read_text(encoding="utf-8").splitlines():
        row = re.match(r"^\| (\d{3}) \| (.*?) \| (.*) \|$", line)
        if row:
            types = set(re.findall(r"`([a-z_]+)`", row[2]))
            codes = set(re.findall(r"`([a-z_]+)`", re.sub(r"\(.*?\)", "", row[3])))
            table[int(row[1])] = (types, codes)
    return table


def error_constraints(schema: Any) -> Iterator[tuple[set[str], set[str]]]:
    """The (types, codes) an error response schema allows, one pair per alternative."""
    schema = resolve(schema)
    if "oneOf" in schema:
        for alternative in schema["oneOf"]:
            yield from error_constraints(alternative)
        return
    types: set[str] = set()
    codes: set[str] = set()
    for part in schema.get("allOf", []):
        inner = part.get("properties", {}).get("error", {}).get("properties", {})
        for name, bucket in (("type", types), ("code", codes)):
            rule = inner.get(name, {})
            bucket.update([rule["const"]] if "const" in rule else rule.get("enum", []))
    yield types, codes


# The document itself


def test_the_document_is_a_valid_openapi_3_1_document() -> None:
    assert SPEC["openapi"].startswith("3.1")
    validate(SPEC)


def test_every_operation_has_its_agreed_operation_id() -> None:
    found = {(method.upper(), path): op["operationId"] for path, method, op in operations()}
    assert found == {
        ("POST", "/v1/allocate"): "createAllocation",
        ("GET", "/v1/allocate"): "listAllocations",
        ("GET", "/v1/allocate/{id}"): "getAllocation",
        ("POST", "/v1/allocate/{id}/renew"): "renewAllocation",
        ("DELETE", "/v1/allocate/{id}"): "releaseAllocation",
        ("POST", "/v1/inference"): "createInference",
        ("GET", "/v1/pools"): "listPools",
        ("GET", "/v1/pools/{pool_id}"): "getPool",
        ("GET", "/v1/health"): "getHealth",
    }


def test_every_response_requires_an_x_request_id_header() -> None:
    all_responses = [r for *_, r in responses()]
    all_responses += [resolve(r) for r in SPEC["components"]["responses"].values()]
    for response in all_responses:
        header = resolve(response["headers"]["x-request-id"])
        assert header["required"] is True
        assert header["schema"]["pattern"] == "^req_[0-9a-f]{24}$"


def test_every_error_response_uses_the_error_envelope() -> None:
    error_validator = schema_validator("Error")
    for path, method, status, response in responses():
        if int(status) < 400:
            continue
        schema = response["content"]["application/json"]["schema"]
        alternatives = resolve(schema).get("oneOf", [schema])
        for alternative in alternatives:
            assert {"$ref": "#/components/schemas/Error"} in resolve(alternative)["allOf"], (
                f"{method.upper()} {path} {status} does not build on Error"
            )
    assert not error_validator.is_valid({"error": {"type": "api_error", "code": "internal_error"}})


def test_error_types_and_codes_are_those_of_the_wire_table() -> None:
    table = wire_error_table()
    error = SPEC["components"]["schemas"]["Error"]["properties"]["error"]["properties"]
    assert set(error["type"]["enum"]) == set().union(*(types for types, _ in table.values()))
    assert set(error["code"]["enum"]) == set().union(*(codes for _, codes in table.values()))
    for path, method, status, response in responses():
        if int(status) < 400:
            continue
        wire_types, wire_codes = table[int(status)]
        for types, codes in error_constraints(response["content"]["application/json"]["schema"]):
            where = f"{method.upper()} {path} {status}"
            assert types, where
            assert codes, where
            assert types <= wire_types, f"{where}: {types}"
            assert codes <= wire_codes, f"{where}: {codes}"


def test_allocation_status_is_exactly_the_six_states() -> None:
    status = SPEC["components"]["schemas"]["AllocationStatus"]
    assert status["enum"] == ["pending", "ready", "releasing", "released", "failed", "expired"]


def test_listed_allocations_are_only_the_live_ones() -> None:
    validator = schema_validator("AllocationList")
    allocation = SPEC["components"]["schemas"]["Allocation"]["examples"][0]
    assert validator.is_valid({"data": [allocation]})
    released = {**allocation, "status": "released", "endpoint": None}
    assert not validator.is_valid({"data": [released]})


def test_every_call_but_health_needs_a_bearer_token() -> None:
    assert SPEC["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http",
        "scheme": "bearer",
        "description": SPEC["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    assert SPEC["security"] == [{"bearerAuth": []}]
    for path, method, operation in operations():
        if path == "/v1/health":
            assert operation["security"] == []
            assert "401" not in operation["responses"]
        else:
            assert "security" not in operation
            assert "401" in operation["responses"], f"{method.upper()} {path}"


def test_rate_limited_answers_require_retry_after_and_503_may_carry_it() -> None:
    for path, method, status, response in responses():
        retry_after = response.get("headers", {}).get("Retry-After")
        if status == "429":
            assert resolve(retry_after)["required"] is True, f"{method.upper()} {path}"
        elif status == "503":
            assert retry_after is not None, f"{method.upper()} {path}"
        else:
            assert retry_after is None, f"{method.upper()} {path} {status}"


@pytest.mark.parametrize(
    ("value", "valid"),
    [
        ("0", True),
        ("120", True),
        ("Wed, 21 Oct 2026 07:28:00 GMT", True),
        ("-1", False),
        ("1.5", False),
        ("soon", False),
        ("2026-10-21T07:28:00Z", False),
    ],
)
def test_retry_after_is_delta_seconds_or_an_http_date(value: str, valid: bool) -> None:
    assert schema_validator("RetryAfter").is_valid(value) is valid


def test_allocation_takes_an_idempotency_key_and_may_answer_a_replay() -> None:
    create = SPEC["paths"]["/v1/allocate"]["post"]
    key = resolve(create["parameters"][0])
    assert (key["name"], key["in"], key["required"]) == ("Idempotency-Key", "header", False)
    assert (key["schema"]["minLength"], key["schema"]["maxLength"]) == (1, 255)
    replayed = resolve(create["responses"]["201"]["headers"]["Idempotent-Replayed"])
    assert replayed["schema"]["enum"] == ["true"]


def test_the_stream_is_a_text_event_stream_answer_of_inference() -> None:
    ok = SPEC["paths"]["/v1/inference"]["post"]["responses"]["200"]["content"]
    assert set(ok) == {"application/json", "text/event-stream"}
    final = SPEC["components"]["schemas"]["InferenceStreamFinal"]
    assert set(final["required"]) == {"id", "delta", "finish_reason", "usage", "latency_ms"}


@pytest.mark.parametrize(
    ("schema", "instance", "valid"),
    [
        ("AllocationRequest", {"model": "m"}, True),
        ("AllocationRequest", {"model": "m", "surprise": [1]}, True),
        ("AllocationRequest", {"gpu_count": 1}, False),
        ("AllocationRequest", {"model": "m", "gpu_count": 64, "ttl_seconds": 86400}, True),
        ("AllocationRequest", {"model": "m", "gpu_count": 0}, False),
        ("AllocationRequest", {"model": "m", "gpu_count": 65}, False),
        ("AllocationRequest", {"model": "m", "gpu_type": None, "ttl_seconds": None}, True),
        ("AllocationRequest", {"model": "m", "ttl_seconds": 86401}, False),
        ("RenewRequest", {}, True),
        ("RenewRequest", {"ttl_seconds": 0}, False),
        ("InferenceRequest", {"allocation_id": "a", "prompt": "p"}, True),
        ("InferenceRequest", {"prompt": "p"}, False),
        ("InferenceRequest", {"allocation_id": "a", "prompt": "p", "max_tokens": 32769}, False),
        ("InferenceRequest", {"allocation_id": "a", "prompt": "p", "temperature": 2.5}, False),
        ("InferenceRequest", {"allocation_id": "a", "prompt": "p", "stop": ["a"] * 4}, True),
        ("InferenceRequest", {"allocation_id": "a", "prompt": "p", "stop": ["a"] * 5}, False),
        ("InferenceRequest", {"allocation_id": "a", "prompt": "p", "stream": "yes"}, False),
    ],
)
def test_request_schemas_hold_the_wire_constraints(
    schema: str, instance: dict[str, Any], valid: bool
) -> None:
    assert schema_validator(schema).is_valid(instance) is valid


def test_every_request_example_fits_its_schema() -> None:
    for path, method, operation in operations():
        body = operation.get("requestBody")
        if body is None:
            continue
        media = body["content"]["application/json"]
        validator = Draft202012Validator(
            {"$ref": f"{SPEC_URI}{media['schema']['$ref']}"}, registry=REGISTRY
        )
        for name, example in media["examples"].items():
            assert validator.is_valid(example["value"]), f"{method.upper()} {path} {name}"


def test_every_response_example_passes_the_checker() -> None:
    request_id = "req_0123456789abcdef01234567"
    concrete = {"{id}": "alloc_0123456789abcdef01234567", "{pool_id}": "gpu-pool-1"}
    for path, method, status, response in responses():
        url = path
        for template, value in concrete.items():
            url = url.replace(template, value)
        for media_type, media in response.get("content", {}).items():
            example = media["example"]
            body = example if isinstance(example, str) else json.dumps(example)
            headers = {"x-request-id": request_id, "content-type": media_type, "retry-after": "1"}
            check_response(method, url, int(status), headers, body.encode())


# The checker


REQUEST_ID = "req_00000000000000000000abcd"
ALLOCATION = SPEC["components"]["schemas"]["Allocation"]["examples"][0]
JSON_HEADERS = {"x-request-id": REQUEST_ID, "content-type": "application/json"}


def error_body(code: str, type_: str) -> bytes:
    """An error envelope answered for ``REQUEST_ID``."""
    error = {"type": type_, "code": code, "message": "m", "request_id": REQUEST_ID}
    return json.dumps({"error": error}).encode()


def stream_body(*deltas: str, final: Mapping[str, Any] | None = None, done: bool = True) -> bytes:
    """A server-sent event stream of inference ``inf_0…1``."""
    ident = "inf_000000000000000000000001"
    events: list[Any] = [{"id": ident, "delta": delta} for delta in deltas]
    usage = {"input_tokens": 3, "output_tokens": len(deltas)}
    events.append(
        {"id": ident, "delta": "", "finish_reason": "stop", "usage": usage, "latency_ms": 1.5}
        if final is None
        else final
    )
    text = "".join(f"data: {json.dumps(event)}\n\n" for event in events)
    return (text + ("data: [DONE]\n\n" if done else "")).encode()


@dataclass
class FakeExchange:
    """A hand-made exchange with the attributes the checker reads."""

    method: str
    path: str
    status: int | None
    response_body: bytes = b""
    response_headers: dict[str, str] = field(default_factory=lambda: dict(JSON_HEADERS))
    request_body: bytes = b""
    request_headers: dict[str, str] = field(default_factory=dict)
    query: str = ""
    fault: str | None = None
    aborted: bool = False


def good_exchanges() -> list[FakeExchange]:
    """A session's worth of answers the contract allows."""
    sse_headers = {"x-request-id": REQUEST_ID, "content-type": "text/event-stream; charset=utf-8"}
    return [
        FakeExchange("GET", "/v1/health", 200, b'{"status": "ok", "version": "1.0.0"}'),
        FakeExchange("POST", "/v1/allocate", 201, json.dumps(ALLOCATION).encode()),
        FakeExchange(
            "GET", f"/v1/allocate/{ALLOCATION['id']}", 200, json.dumps(ALLOCATION).encode()
        ),
        FakeExchange(
            "GET",
            "/v1/allocate",
            200,
            json.dumps({"data": [ALLOCATION]}).encode(),
            query="pool_id=gpu-pool-1",
        ),
        FakeExchange(
            "POST",
            "/v1/inference",
            200,
            stream_body("Hel", "lo"),
            response_headers=sse_headers,
            request_body=b'{"stream": true}',
        ),
        FakeExchange(
            "DELETE",
            f"/v1/allocate/{ALLOCATION['id']}",
            204,
            response_headers={"x-request-id": REQUEST_ID},
        ),
        FakeExchange(
            "GET",
            "/v1/allocate/alloc_nope",
            404,
            error_body("allocation_not_found", "not_found_error"),
        ),
        FakeExchange(
            "POST",
            "/v1/allocate",
            503,
            error_body("capacity_exhausted", "capacity_error"),
            response_headers={**JSON_HEADERS, "retry-after": "2"},
        ),
        FakeExchange(
            "GET",
            "/v1/pools",
            429,
            error_body("rate_limited", "rate_limit_error"),
            response_headers={**JSON_HEADERS, "retry-after": "Wed, 21 Oct 2026 07:28:00 GMT"},
        ),
        FakeExchange("GET", "/v1/nowhere", 404, error_body("route_not_found", "not_found_error")),
        FakeExchange(
            "PUT", "/v1/pools", 405, error_body("method_not_allowed", "invalid_request_error")
        ),
    ]


def test_the_checker_passes_a_conforming_session() -> None:
    check_exchanges(good_exchanges())


def test_the_checker_skips_faulted_and_dropped_exchanges() -> None:
    check_exchanges(
        [
            FakeExchange("GET", "/v1/pools", 200, b"{not json", fault="malformed_body"),
            FakeExchange("GET", "/v1/pools", None, fault="drop"),
            FakeExchange("GET", "/v1/pools", None),
        ]
    )


SSE_HEADERS = {"x-request-id": REQUEST_ID, "content-type": "text/event-stream"}


def test_the_checker_accepts_a_stream_the_client_closed_early() -> None:
    cut = stream_body("Hel", "lo")[:100]
    check_exchanges([FakeExchange("POST", "/v1/inference", 200, cut, SSE_HEADERS, aborted=True)])


def test_the_checker_still_judges_the_events_of_a_stream_closed_early() -> None:
    cut = b'data: {"id": "inf_000000000000000000000001", "delta": 7}\n\ndata: {"id'
    with pytest.raises(ConformanceError, match="event #0 breaks the schema at delta"):
        check_exchanges(
            [FakeExchange("POST", "/v1/inference", 200, cut, SSE_HEADERS, aborted=True)]
        )


def bad(exchange: FakeExchange, message: str) -> Any:
    """A parameter case: ``exchange`` must fail with ``message`` in the report."""
    return pytest.param(exchange, message, id=message)


@pytest.mark.parametrize(
    ("exchange", "message"),
    [
        bad(
            FakeExchange(
                "GET", "/v1/health", 401, error_body("missing_api_key", "authentication_error")
            ),
            "status 401 is not documented for GET /v1/health",
        ),
        bad(
            FakeExchange(
                "GET",
                "/v1/health",
                200,
                b'{"status": "ok", "version": "1"}',
                response_headers={"content-type": "application/json"},
            ),
            "required header x-request-id is missing",
        ),
        bad(
            FakeExchange(
                "GET",
                "/v1/health",
                200,
                b'{"status": "ok", "version": "1"}',
                response_headers={**JSON_HEADERS, "x-request-id": "abc"},
            ),
            "header x-request-id breaks the schema",
        ),
        bad(
            FakeExchange("GET", "/v1/health", 200, b'{"status": "fine", "version": "1"}'),
            "body breaks the schema at status",
        ),
        bad(FakeExchange("GET", "/v1/health", 200, b'{"status": "ok"'), "body is not JSON"),
        bad(
            FakeExchange(
                "GET",
                "/v1/health",
                200,
                b'{"status": "ok", "version": "1"}',
                response_headers={"x-request-id": REQUEST_ID, "content-type": "text/plain"},
            ),
            "Content-Type 'text/plain' is not one of",
        ),
        bad(
            FakeExchange(
                "POST",
                "/v1/allocate",
                201,
                json.dumps({**ALLOCATION, "status": "booting"}).encode(),
            ),
            "body breaks the schema at status",
        ),
        bad(
            FakeExchange(
                "POST",
                "/v1/allocate",
                201,
                json.dumps({**ALLOCATION, "status": "pending"}).encode(),
            ),
            "body breaks the schema at endpoint",
        ),
        bad(
            FakeExchange(
                "GET",
                "/v1/allocate",
                200,
                json.dumps(
                    {"data": [{**ALLOCATION, "status": "expired", "endpoint": None}]}
                ).encode(),
            ),
            "body breaks the schema at data/0/status",
        ),
        bad(
            FakeExchange("GET", "/v1/pools", 429, error_body("rate_limited", "rate_limit_error")),
            "required header retry-after is missing",
        ),
        bad(
            FakeExchange(
                "POST", "/v1/allocate", 503, error_body("capacity_exhausted", "capacity_error")
            ),
            "503 capacity_exhausted without a Retry-After header",
        ),
        bad(
            FakeExchange(
                "GET", "/v1/pools/x", 404, error_body("allocation_not_found", "not_found_error")
            ),
            "body breaks the schema at error/code",
        ),
        bad(
            FakeExchange(
                "GET",
                "/v1/pools/x",
                404,
                error_body("pool_not_found", "not_found_error").replace(
                    REQUEST_ID.encode(), b"req_ffffffffffffffffffffffff"
                ),
            ),
            "is not the x-request-id header",
        ),
        bad(FakeExchange("DELETE", "/v1/allocate/x", 204, b"{}"), "expected no body"),
        bad(FakeExchange("GET", "/v1/nowhere", 200, b"{}"), "/v1/nowhere is not a path of the API"),
        bad(
            FakeExchange("PUT", "/v1/pools", 404, error_body("route_not_found", "not_found_error")),
            "PUT is not an operation of /v1/pools: expected 405",
        ),
        bad(
            FakeExchange(
                "POST",
                "/v1/inference",
                200,
                stream_body("a", done=False),
                response_headers={**JSON_HEADERS, "content-type": "text/event-stream"},
            ),
            "event stream does not end with 'data: [DONE]'",
        ),
        bad(
            FakeExchange(
                "POST",
                "/v1/inference",
                200,
                stream_body("a", final={"id": "inf_000000000000000000000001", "delta": ""}),
                response_headers={**JSON_HEADERS, "content-type": "text/event-stream"},
            ),
            "final event #1 breaks the schema",
        ),
        bad(
            FakeExchange(
                "POST",
                "/v1/inference",
                200,
                b'data: {"id": "inf_000000000000000000000001", "delta": "a"}\n\ndata: [DONE]\n\n',
                response_headers={**JSON_HEADERS, "content-type": "text/event-stream"},
            ),
            "final event #0 breaks the schema",
        ),
        bad(
            FakeExchange(
                "POST",
                "/v1/inference",
                200,
                stream_body("a"),
                response_headers={**JSON_HEADERS, "content-type": "text/event-stream"},
                request_body=b'{"allocation_id": "a", "prompt": "p"}',
            ),
            "a request with stream=False must be answered application/json",
        ),
        bad(
            FakeExchange("POST", "/v1/inference", 200, stream_body("a")[:-1], SSE_HEADERS),
            "event stream ends inside an event",
        ),
        bad(
            FakeExchange(
                "POST", "/v1/inference", 200, stream_body("a") + b"data: {}\n\n", SSE_HEADERS
            ),
            "event stream does not end with 'data: [DONE]'",
        ),
        bad(
            FakeExchange(
                "POST",
                "/v1/allocate",
                201,
                json.dumps(ALLOCATION).encode(),
                response_headers={**JSON_HEADERS, "idempotent-replayed": "true"},
            ),
            "Idempotent-Replayed on a request without an Idempotency-Key",
        ),
    ],
)
def test_the_checker_fails_a_broken_answer_and_names_it(
    exchange: FakeExchange, message: str
) -> None:
    with pytest.raises(ConformanceError) as caught:
        check_exchanges([*good_exchanges(), exchange])
    report = str(caught.value)
    assert report.startswith("1 exchange(s) break docs/openapi.yaml")
    assert f"exchange #{len(good_exchanges())}: {exchange.method} {exchange.path}" in report
    assert message in report


def test_the_checker_reports_every_broken_exchange_at_once() -> None:
    broken = FakeExchange("GET", "/v1/health", 200, b"[]")
    with pytest.raises(ConformanceError, match=r"^3 exchange\(s\)") as caught:
        check_exchanges([broken, *good_exchanges(), broken, broken])
    assert str(caught.value).count("GET /v1/health -> 200") == 3


def test_check_response_checks_one_answer_directly() -> None:
    check_response(
        "GET", "/v1/health", 200, JSON_HEADERS, b'{"status": "degraded", "version": "2"}'
    )
    with pytest.raises(AssertionError, match="status 418 is not documented"):
        check_response("GET", "/v1/health", 418, JSON_HEADERS, b"{}")


def test_the_checker_fails_a_server_error_nobody_injected() -> None:
    with pytest.raises(ConformanceError, match="nobody injected"):
        check_exchanges(
            [FakeExchange("GET", "/v1/pools", 500, error_body("internal_error", "api_error"))]
        )


def test_the_checker_fails_an_exchange_the_emulator_crashed_on() -> None:
    crashed = FakeExchange(
        "GET", "/v1/pools", 500, error_body("internal_error", "api_error"), fault="emulator_bug"
    )
    with pytest.raises(ConformanceError, match="crashed"):
        check_exchanges([crashed])


def test_the_checker_still_checks_an_answer_that_was_only_delayed() -> None:
    with pytest.raises(ConformanceError):
        check_exchanges([FakeExchange("GET", "/v1/health", 200, b"[]", fault="latency")])
