"""Bad requests: each gets the right status and error envelope, never a 500."""

from __future__ import annotations

import contextlib
import json
import logging
import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from hostedai_harpoon.testing import Emulator
from hostedai_harpoon.testing import _api as api_module
from tests.conftest import EmulatorFactory

from .conftest import AUTH

REQUEST_ID = re.compile(r"req_[0-9a-f]{24}")

_ALLOC: dict[str, Any] = {"model": "gemma-3-270m"}


def _alloc(**fields: Any) -> dict[str, Any]:
    return {**_ALLOC, **fields}


def _infer(**fields: Any) -> dict[str, Any]:
    return {"allocation_id": "{alloc}", "prompt": "hi", **fields}


def _raw_alloc(field: str, raw: bytes) -> bytes:
    """An allocation body whose ``field`` is ``raw``, verbatim (a repeated key wins)."""
    return b'{"model": "gemma-3-270m", "%s": %s}' % (field.encode(), raw)


def _raw_infer(field: str, raw: bytes) -> bytes:
    """An inference body whose ``field`` is ``raw``, verbatim (a repeated key wins)."""
    return b'{"allocation_id": "{alloc}", "prompt": "hi", "%s": %s}' % (field.encode(), raw)


HUGE = b"1" + b"0" * 400  # an integer no float holds
DEEP = b"[" * 100_000 + b"]" * 100_000
LONE = b'"\\ud800"'  # a lone UTF-16 surrogate: valid JSON syntax, not valid text


BAD_REQUESTS = [
    # (method, path, body, status, code)
    ("POST", "/v1/allocate", b"{not json", 400, "invalid_json"),
    ("POST", "/v1/allocate", b"", 400, "invalid_json"),
    ("POST", "/v1/allocate", b"[1, 2]", 400, "invalid_json"),
    ("POST", "/v1/allocate", b'"model"', 400, "invalid_json"),
    ("POST", "/v1/allocate", b"\xff\xfe", 400, "invalid_json"),
    ("POST", "/v1/allocate", b'{"model": "gemma-3-270m", "gpu_count": NaN}', 400, "invalid_json"),
    ("POST", "/v1/allocate", json.dumps(_ALLOC).encode("utf-16"), 400, "invalid_json"),
    ("POST", "/v1/allocate", json.dumps(_ALLOC).encode("utf-16-le"), 400, "invalid_json"),
    ("POST", "/v1/allocate", json.dumps(_ALLOC).encode("utf-32"), 400, "invalid_json"),
    ("POST", "/v1/allocate", _raw_alloc("model", DEEP), 400, "invalid_json"),
    ("POST", "/v1/allocate", _raw_alloc("model", LONE), 400, "invalid_json"),
    ("POST", "/v1/allocate", _raw_alloc("model", b'"\\udc00x"'), 400, "invalid_json"),
    ("POST", "/v1/allocate", _raw_alloc("gpu_type", LONE), 400, "invalid_json"),
    ("POST", "/v1/allocate", _raw_alloc("x", b'{"\\ud800": 1}'), 400, "invalid_json"),
    ("POST", "/v1/allocate", {}, 422, "validation_error"),
    ("POST", "/v1/allocate", {"model": 3}, 422, "validation_error"),
    ("POST", "/v1/allocate", {"model": None}, 422, "validation_error"),
    ("POST", "/v1/allocate", _alloc(gpu_count=True), 422, "validation_error"),
    ("POST", "/v1/allocate", _alloc(gpu_count=1.0), 422, "validation_error"),
    ("POST", "/v1/allocate", _alloc(gpu_count="1"), 422, "validation_error"),
    ("POST", "/v1/allocate", _alloc(gpu_count=0), 422, "validation_error"),
    ("POST", "/v1/allocate", _alloc(gpu_count=65), 422, "validation_error"),
    ("POST", "/v1/allocate", _alloc(ttl_seconds=0), 422, "validation_error"),
    ("POST", "/v1/allocate", _alloc(ttl_seconds=86401), 422, "validation_error"),
    ("POST", "/v1/allocate", _alloc(ttl_seconds=False), 422, "validation_error"),
    ("POST", "/v1/allocate", _alloc(pool_id=1), 422, "validation_error"),
    ("POST", "/v1/allocate", _alloc(gpu_type=1), 422, "validation_error"),
    ("POST", "/v1/allocate", _alloc(pool_id="gpu-pool-9"), 422, "unknown_pool"),
    ("POST", "/v1/allocate", {"model": "llama-9000"}, 422, "unknown_model"),
    ("POST", "/v1/inference", b"nope", 400, "invalid_json"),
    ("POST", "/v1/inference", {"prompt": "hi"}, 422, "validation_error"),
    ("POST", "/v1/inference", {"allocation_id": "{alloc}"}, 422, "validation_error"),
    ("POST", "/v1/inference", _infer(prompt=1), 422, "validation_error"),
    ("POST", "/v1/inference", _infer(max_tokens=0), 422, "validation_error"),
    ("POST", "/v1/inference", _infer(max_tokens=32769), 422, "validation_error"),
    ("POST", "/v1/inference", _infer(max_tokens=True), 422, "validation_error"),
    ("POST", "/v1/inference", _infer(temperature=2.5), 422, "validation_error"),
    ("POST", "/v1/inference", _infer(temperature=-0.1), 422, "validation_error"),
    ("POST", "/v1/inference", _infer(temperature="hot"), 422, "validation_error"),
    ("POST", "/v1/inference", _infer(temperature=True), 422, "validation_error"),
    ("POST", "/v1/inference", _infer(stop=["a", "b", "c", "d", "e"]), 422, "validation_error"),
    ("POST", "/v1/inference", _infer(stop=[1]), 422, "validation_error"),
    ("POST", "/v1/inference", _infer(stream="yes"), 422, "validation_error"),
    ("POST", "/v1/inference", _infer(stream=1), 422, "validation_error"),
    ("POST", "/v1/inference", _infer(model="qwen3-30b-a3b"), 422, "model_mismatch"),
    ("POST", "/v1/inference", _infer(allocation_id="alloc_x"), 404, "allocation_not_found"),
    ("POST", "/v1/inference", _raw_infer("temperature", HUGE), 422, "validation_error"),
    ("POST", "/v1/inference", _raw_infer("temperature", b"-" + HUGE), 422, "validation_error"),
    ("POST", "/v1/inference", _raw_infer("temperature", b"1e400"), 422, "validation_error"),
    ("POST", "/v1/inference", _raw_infer("max_tokens", HUGE), 422, "validation_error"),
    ("POST", "/v1/inference", _raw_infer("temperature", DEEP), 400, "invalid_json"),
    ("POST", "/v1/inference", _raw_infer("prompt", LONE), 400, "invalid_json"),
    ("POST", "/v1/inference", _raw_infer("allocation_id", LONE), 400, "invalid_json"),
    ("POST", "/v1/inference", _raw_infer("model", LONE), 400, "invalid_json"),
    ("POST", "/v1/inference", _raw_infer("stop", LONE), 400, "invalid_json"),
    ("POST", "/v1/allocate/{alloc}/renew", b"[]", 400, "invalid_json"),
    ("POST", "/v1/allocate/{alloc}/renew", {"ttl_seconds": 0}, 422, "validation_error"),
    ("POST", "/v1/allocate/{alloc}/renew", {"ttl_seconds": "60"}, 422, "validation_error"),
    ("POST", "/v1/allocate/{alloc}/renew", b'{"ttl_seconds": %s}' % HUGE, 422, "validation_error"),
    ("POST", "/v1/allocate/{alloc}/renew", b'{"ttl_seconds": %s}' % DEEP, 400, "invalid_json"),
    ("POST", "/v1/allocate/alloc_x/renew", {}, 404, "allocation_not_found"),
    ("GET", "/v1/allocate/alloc_x", None, 404, "allocation_not_found"),
    ("DELETE", "/v1/allocate/alloc_x", None, 404, "allocation_not_found"),
    ("GET", "/v1/pools/nope", None, 404, "pool_not_found"),
    ("GET", "/v2/pools", None, 404, "route_not_found"),
    ("GET", "/v1/pools/", None, 404, "route_not_found"),
    ("GET", "/v1/allocate/a/b/c", None, 404, "route_not_found"),
    ("GET", "/", None, 404, "route_not_found"),
    ("PUT", "/v1/allocate", {}, 405, "method_not_allowed"),
    ("DELETE", "/v1/pools", None, 405, "method_not_allowed"),
    ("POST", "/v1/health", None, 405, "method_not_allowed"),
    ("GET", "/v1/inference", None, 405, "method_not_allowed"),
    ("PATCH", "/v1/allocate/{alloc}", None, 405, "method_not_allowed"),
]

TYPES = {
    400: "invalid_request_error",
    404: "not_found_error",
    405: "invalid_request_error",
    409: "conflict_error",
    422: "invalid_request_error",
}


@pytest.fixture(params=["in-process", "tcp"])
def any_client(request: pytest.FixtureRequest, emulator: Emulator) -> Iterator[httpx.Client]:
    """An authenticated client of the default emulator, in-process or over TCP."""
    if request.param == "in-process":
        with emulator.http_client(headers=AUTH) as http:
            yield http
        return
    with emulator.serve() as url, httpx.Client(base_url=url, headers=AUTH, timeout=10) as http:
        yield http


@pytest.mark.parametrize(("method", "path", "body", "status", "code"), BAD_REQUESTS)
def test_bad_request_gets_its_error_envelope(
    emulator: Emulator,
    any_client: httpx.Client,
    method: str,
    path: str,
    body: bytes | dict[str, Any] | None,
    status: int,
    code: str,
) -> None:
    alloc_id = any_client.post("/v1/allocate", json=_ALLOC).json()["id"]
    if isinstance(body, dict):
        body = httpx.Request("POST", "/", json=body).content
    if body is not None:
        body = body.replace(b"{alloc}", alloc_id.encode())
    response = any_client.request(method, path.format(alloc=alloc_id), content=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert error["type"] == TYPES[status]
    assert error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    assert emulator.pools()[0].gpus_free == 7
    logged = emulator.exchanges[-1]
    assert (logged.status, logged.fault) == (status, None)


def test_a_surrogate_pair_is_one_character_not_a_lone_surrogate(client: httpx.Client) -> None:
    alloc_id = client.post("/v1/allocate", json=_ALLOC).json()["id"]
    body = b'{"allocation_id": "%s", "prompt": "\\ud83d\\ude00"}' % alloc_id.encode()
    response = client.post("/v1/inference", content=body)
    assert response.status_code == 200
    assert response.json()["usage"]["input_tokens"] == 1


def test_a_utf8_body_with_non_ascii_text_is_accepted(client: httpx.Client) -> None:
    alloc_id = client.post("/v1/allocate", json=_ALLOC).json()["id"]
    body = json.dumps({"allocation_id": alloc_id, "prompt": "héllo ☃"}, ensure_ascii=False)
    assert client.post("/v1/inference", content=body.encode()).status_code == 200


@pytest.mark.parametrize("via", ["in-process", "tcp"])
def test_an_emulator_crash_is_a_logged_500_envelope_not_an_exception(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, via: str
) -> None:
    def explode(*args: object) -> object:
        raise RuntimeError("boom")

    monkeypatch.setattr(api_module, "complete", explode)
    # Not make_emulator: its conformance check rightly fails an exchange the emulator crashed on.
    emu = Emulator()
    with contextlib.ExitStack() as stack:
        if via == "in-process":
            http = stack.enter_context(emu.http_client(headers=AUTH))
        else:
            url = stack.enter_context(emu.serve())
            http = stack.enter_context(httpx.Client(base_url=url, headers=AUTH, timeout=10))
        alloc_id = http.post("/v1/allocate", json=_ALLOC).json()["id"]
        with caplog.at_level(logging.ERROR, logger="hostedai_harpoon.testing"):
            response = http.post("/v1/inference", json={"allocation_id": alloc_id, "prompt": "x"})
        assert http.get("/v1/health").status_code == 200
    assert response.status_code == 500
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("api_error", "internal_error")
    assert error["request_id"] == response.headers["x-request-id"]
    crashed = emu.exchanges[1]
    assert (crashed.status, crashed.fault) == (500, "emulator_bug")
    assert crashed.request_id == error["request_id"]
    [record] = [r for r in caplog.records if r.name == "hostedai_harpoon.testing"]
    assert record.levelno == logging.ERROR
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], RuntimeError)


def test_method_not_allowed_lists_the_allowed_methods(client: httpx.Client) -> None:
    assert client.put("/v1/allocate/alloc_x").headers["allow"] == "GET, DELETE"


def test_unknown_body_fields_are_ignored(client: httpx.Client) -> None:
    response = client.post("/v1/allocate", json=_alloc(colour="blue", nested={"a": 1}))
    assert response.status_code == 201


def test_renew_accepts_an_empty_body(client: httpx.Client) -> None:
    alloc_id = client.post("/v1/allocate", json=_ALLOC).json()["id"]
    assert client.post(f"/v1/allocate/{alloc_id}/renew", content=b"").status_code == 200


@pytest.mark.parametrize(
    "authorization", [None, "", "Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "test-key"]
)
def test_missing_or_non_bearer_auth_is_401_missing_api_key(
    emulator: Emulator, authorization: str | None
) -> None:
    headers = {} if authorization is None else {"Authorization": authorization}
    with emulator.http_client(headers=headers) as http:
        for response in (http.get("/v1/pools"), http.post("/v1/allocate", json=_ALLOC)):
            assert response.status_code == 401
            assert response.json()["error"]["type"] == "authentication_error"
            assert response.json()["error"]["code"] == "missing_api_key"
    assert emulator.allocations() == []


def test_any_key_is_accepted_unless_keys_are_configured(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(api_keys={"good"}, version="test-1")
    with emu.http_client() as http:
        bad = http.get("/v1/pools", headers={"Authorization": "Bearer bad"})
        good = http.get("/v1/pools", headers={"Authorization": "bearer good"})
        health = http.get("/v1/health")
    assert (bad.status_code, bad.json()["error"]["code"]) == (401, "invalid_api_key")
    assert good.status_code == 200
    assert health.json() == {"status": "ok", "version": "test-1"}


def test_health_needs_no_auth_and_reports_degraded(emulator: Emulator) -> None:
    emulator.set_health("degraded")
    with emulator.http_client() as http:
        assert http.get("/v1/health").json()["status"] == "degraded"


def test_every_response_carries_a_fresh_request_id(client: httpx.Client) -> None:
    responses = [
        client.get("/v1/health"),
        client.get("/v1/nope"),
        client.post("/v1/allocate", json=_ALLOC),
        client.get("/v1/pools", headers={"x-request-id": "req_" + "0" * 24}),
    ]
    ids = [response.headers["x-request-id"] for response in responses]
    assert all(REQUEST_ID.fullmatch(request_id) for request_id in ids)
    assert len(set(ids)) == len(ids)
    assert "req_" + "0" * 24 not in ids


def test_request_ids_are_reproducible_from_the_seed(make_emulator: EmulatorFactory) -> None:
    def ids(seed: int) -> list[str]:
        with make_emulator(seed=seed).http_client(headers=AUTH) as http:
            return [http.get("/v1/pools").headers["x-request-id"] for _ in range(3)]

    assert ids(1) == ids(1)
    assert ids(1) != ids(2)
