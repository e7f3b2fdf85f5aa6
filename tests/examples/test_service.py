"""``examples/service/``: the proof of concept's HTTP service, served by uvicorn on 127.0.0.1
and called over HTTP, its GPUs from an emulator that the tests watch."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
import service_guards
from harpoon_service import FAILURES, failure_for
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, Fault, FaultPlan
from tests.examples.serving import API_KEY, SERVICE, served, serving


@pytest.fixture
def emulator() -> Emulator:
    return Emulator()


@pytest.fixture
def service(emulator: Emulator) -> Iterator[httpx.Client]:
    with served(emulator) as (http, _):
        yield http
    assert emulator.live_allocations() == []


# POST /v2/process ------------------------------------------------------------------------


def test_a_simple_text_is_routed_to_the_small_model(service: httpx.Client) -> None:
    response = service.post("/v2/process", json={"text": "Hi there!"})
    assert response.status_code == 200
    body = response.json()
    assert (body["deployment"], body["model"]) == ("gemma-3-270m", "gemma-3-270m")
    assert body["reason"].startswith("complexity ")
    assert body["text"]
    assert body["usage"]["output_tokens"] > 0
    assert body["attempts"] == [{"deployment": "gemma-3-270m", "error": None}]
    assert body["request_id"].startswith("req_")


def test_a_deployment_pins_the_target(service: httpx.Client, emulator: Emulator) -> None:
    response = service.post("/v2/process", json={"text": "Hi", "deployment": "qwen3-30b-a3b"})
    assert response.status_code == 200
    assert response.json()["deployment"] == "qwen3-30b-a3b"
    assert [a.model for a in emulator.allocations()] == ["qwen3-30b-a3b"]


@pytest.mark.parametrize("deployment", ["HostedAI", None])
def test_the_proof_of_concepts_deployment_or_none_lets_the_policy_choose(
    service: httpx.Client, deployment: str | None
) -> None:
    text = "Prove step by step that there are infinitely many primes, and explain why."
    response = service.post("/v2/process", json={"text": text, "deployment": deployment})
    assert response.status_code == 200
    assert response.json()["deployment"] == "qwen3-30b-a3b"


def test_max_tokens_is_passed_on(service: httpx.Client) -> None:
    response = service.post("/v2/process", json={"text": "Hi", "max_tokens": 3})
    assert response.status_code == 200
    assert response.json()["usage"]["output_tokens"] <= 3


@pytest.mark.parametrize(
    ("body", "names"),
    [
        (b'{"text": ', "not JSON"),
        (b"\xff\xfe", "not JSON"),
        (b'["text"]', "JSON object"),
        (b"{}", '"text" is required'),
        (b'{"deployment": "gemma-3-270m"}', '"text" is required'),
        (b'{"text": 42}', '"text" must be a string, not a number'),
        (b'{"text": null}', '"text" must be a string, not null'),
        (b'{"text": "   "}', '"text" must not be empty'),
        (b'{"text": "hi", "deployment": 7}', '"deployment" must be a string or null, not a number'),
        (b'{"text": "hi", "deployment": ""}', '"deployment" must not be empty'),
        (b'{"text": "hi", "deployment": " "}', '"deployment" must not be empty'),
        (b"[" * 2_000 + b"]" * 2_000, "nested too deeply"),
        (b'{"text": ' * 2_000 + b'"hi"' + b"}" * 2_000, "nested too deeply"),
        (b'{"text": "hi", "max_tokens": "5"}', '"max_tokens" must be'),
        (b'{"text": "hi", "max_tokens": 0}', '"max_tokens" must be'),
        (b'{"text": "hi", "max_tokens": true}', '"max_tokens" must be'),
    ],
)
def test_a_bad_body_is_a_400_with_a_json_error(
    service: httpx.Client, emulator: Emulator, body: bytes, names: str
) -> None:
    response = service.post(
        "/v2/process", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] == "bad_request"
    assert names in error["message"]
    assert error["request_id"] == response.headers["x-request-id"]
    assert emulator.allocations() == []


def test_an_unknown_deployment_is_a_400_naming_the_known_ones(
    service: httpx.Client, emulator: Emulator
) -> None:
    response = service.post("/v2/process", json={"text": "hi", "deployment": "gpt-9"})
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "unknown_deployment"
    assert error["message"] == (
        'no deployment is named "gpt-9": gemma-3-270m, qwen3-30b-a3b, or "HostedAI" or null '
        "to let the service choose"
    )
    assert emulator.allocations() == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"text": "hi", "max_tokens": 100_000},
            "the request is too large for every deployment: gemma-3-270m takes max_tokens up "
            "to 8192; qwen3-30b-a3b takes max_tokens up to 16384",
        ),
        (
            {"text": "hi", "max_tokens": 9000, "deployment": "gemma-3-270m"},
            "the request is too large for the deployment gemma-3-270m: gemma-3-270m takes "
            "max_tokens up to 8192",
        ),
        (
            {"text": "word " * 30_000, "max_tokens": 10},
            "the request is too large for every deployment: gemma-3-270m's context window "
            "holds 32768 tokens, the text and max_tokens need about 37511; qwen3-30b-a3b's",
        ),
    ],
)
def test_a_request_too_large_for_every_deployment_is_a_422(
    service: httpx.Client, emulator: Emulator, body: dict[str, Any], message: str
) -> None:
    response = service.post("/v2/process", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["type"] == "request_too_large"
    assert error["message"].startswith(message)
    assert emulator.allocations() == []


def test_a_request_too_large_for_one_deployment_goes_to_the_other(service: httpx.Client) -> None:
    response = service.post("/v2/process", json={"text": "hi", "max_tokens": 9000})
    assert response.status_code == 200
    assert response.json()["deployment"] == "qwen3-30b-a3b"


@pytest.mark.parametrize(("max_tokens", "status"), [(256, 503), (100_000, 422)])
def test_no_healthy_deployment_is_a_503_unless_none_could_take_the_request(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, max_tokens: int, status: int
) -> None:
    async def down(self: harpoon.Orchestrator, text: str, **options: Any) -> None:
        raise harpoon.NoRouteError(
            "no healthy target can take the request",
            reasons={"gemma-3-270m": "unhealthy", "qwen3-30b-a3b": "circuit breaker open"},
        )

    monkeypatch.setattr(harpoon.Orchestrator, "process", down)
    with served(emulator) as (http, _):
        response = http.post("/v2/process", json={"text": "hi", "max_tokens": max_tokens})
    assert response.status_code == status
    assert response.json()["error"]["type"] == (
        "no_deployment_available" if status == 503 else "request_too_large"
    )


@pytest.mark.parametrize(
    ("method", "path", "status", "kind", "message"),
    [
        ("GET", "/nope", 404, "not_found", "no such endpoint: GET /nope; the service serves "),
        ("GET", "/v2/process", 405, "method_not_allowed", "/v2/process does not take GET"),
        ("POST", "/health", 405, "method_not_allowed", "/health does not take POST"),
    ],
)
def test_an_unknown_path_or_method_is_a_json_error(
    service: httpx.Client, method: str, path: str, status: int, kind: str, message: str
) -> None:
    response = service.request(method, path)
    assert response.status_code == status
    assert response.headers["content-type"] == "application/json"
    error = response.json()["error"]
    assert error["type"] == kind
    assert error["message"].startswith(message)
    if status == 405:
        assert "POST" in response.headers["allow"] or "GET" in response.headers["allow"]


def run_service(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """``python -c code`` in the service's directory, without the caller's ``HOSTED_AI_*``."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOSTED_AI_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=SERVICE,
        capture_output=True,
        text=True,
        timeout=30,
        env={**clean, **env},
    )


RUN_SERVICE = (
    "import runpy, sys\n"
    "sys.argv = ['harpoon_service.py', '--port', '0']\n"
    "runpy.run_path('harpoon_service.py', run_name='__main__')\n"
)


def test_a_base_url_without_a_key_is_one_line_at_startup() -> None:
    done = run_service(RUN_SERVICE, {"HOSTED_AI_BASE_URL": "http://127.0.0.1:9"})
    assert done.returncode == 2
    assert done.stderr == (
        "harpoon_service.py: error: HOSTED_AI_BASE_URL is set but HOSTED_AI_API_KEY is not: "
        "set the endpoint's API key too, or unset HOSTED_AI_BASE_URL to serve the embedded "
        "emulator\n"
    )
    assert "serving" not in done.stdout


@pytest.mark.parametrize("hidden", ["uvicorn", "starlette"])
def test_without_the_service_extra_it_says_which_extra_to_install(hidden: str) -> None:
    # As if the package were not installed: an import of it raises ModuleNotFoundError.
    done = run_service(f"import sys\nsys.modules[{hidden!r}] = None\n{RUN_SERVICE}", {})
    assert done.returncode == 1
    assert done.stderr.startswith(f"the service needs the 'service' extra ({hidden}")
    assert done.stderr.endswith(" is not installed): pip install 'hostedai-harpoon[service]'\n")
    assert len(done.stderr.splitlines()) == 1


def test_an_upstream_that_keeps_failing_is_a_503(emulator: Emulator) -> None:
    emulator.faults = FaultPlan(rules=[Fault("error", status=500, path="/v1/inference")])
    with served(emulator) as (http, _):
        response = http.post("/v2/process", json={"text": "hi"})
        assert response.status_code == 503
        assert response.json()["error"]["type"] == "all_attempts_failed"
    assert emulator.live_allocations() == []


def test_an_upstream_that_refuses_the_key_is_a_502() -> None:
    emulator = Emulator(api_keys=["another-key"])
    with served(emulator) as (http, _):
        response = http.post("/v2/process", json={"text": "hi"})
        assert response.status_code == 502
        error = response.json()["error"]
        assert error["type"] == "upstream_error"
        assert API_KEY not in response.text


def hostile_upstream(status: int) -> Starlette:
    """An API that answers every request ``status``, echoing the caller's credentials in
    its message, its request id and a header of its own."""

    async def echo(request: Request) -> JSONResponse:
        said = request.headers.get("authorization", "")
        error = {"type": "x", "code": "x", "message": f"refused {said}", "request_id": said}
        headers = {"x-request-id": said, "x-seen-key": said.removeprefix("Bearer ")}
        return JSONResponse({"error": error}, status, headers=headers)

    methods = ["GET", "POST", "DELETE"]
    return Starlette(routes=[Route("/{path:path}", echo, methods=methods)])


@pytest.mark.parametrize("status", [500, 401])
def test_an_upstream_that_echoes_the_key_never_gets_it_to_the_callers(
    status: int, caplog: pytest.LogCaptureFixture
) -> None:
    with serving(hostile_upstream(status)) as base_url, served(base_url) as (http, _):
        responses = [
            http.post("/v2/process", json={"text": "hi"}),
            http.get("/health"),
            http.get("/metrics"),
        ]
    process, health, _ = responses
    assert process.status_code in (502, 503)
    error = process.json()["error"]
    assert error["message"] == failure_for_kind(error["type"]).message
    assert error["request_id"] == process.headers["x-request-id"]
    assert health.status_code == 503
    # A verdict (authentication_error, internal_server_error, circuit_open_error), not words.
    assert re.fullmatch(r"[a-z]+(_[a-z]+)*", health.json()["api_error"])
    for response in responses:
        assert API_KEY not in response.text
        assert not any(API_KEY in value for value in response.headers.values())
    assert API_KEY not in caplog.text


def failure_for_kind(kind: str) -> service_guards.Failure:
    return next(failure for _, failure in FAILURES if failure.kind == kind)


def test_a_bug_in_the_service_is_a_json_500_without_its_details(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(self: harpoon.Orchestrator, text: str, **options: Any) -> None:
        raise RuntimeError("the secret internals")

    monkeypatch.setattr(harpoon.Orchestrator, "process", broken)
    with served(emulator) as (http, _):
        response = http.post("/v2/process", json={"text": "hi"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/json"
    assert response.json()["error"]["type"] == "internal_error"
    assert "secret" not in response.text


@pytest.mark.parametrize(
    ("error", "status", "kind"),
    [
        (harpoon.ConfigurationError("bad"), 400, "bad_request"),
        (harpoon.UsageError("misused"), 500, "internal_error"),
        (harpoon.NoRouteError("none"), 503, "no_deployment_available"),
        (harpoon.AllAttemptsFailedError("all failed", attempts=()), 503, "all_attempts_failed"),
        (harpoon.OrchestratorClosedError("closing"), 503, "shutting_down"),
        (harpoon.BudgetExceededError("spent", budget=1.0, spent=1.5), 429, "budget_exceeded"),
        (harpoon.APITimeoutError("slow"), 504, "upstream_timeout"),
        (harpoon.APIConnectionError("down"), 502, "upstream_error"),
        (harpoon.CircuitOpenError("open"), 502, "upstream_error"),
        (harpoon.AllocationError("lost"), 502, "upstream_error"),
    ],
)
def test_sdk_errors_map_to_http_statuses_and_snake_case_types(
    error: harpoon.HostedAIError, status: int, kind: str
) -> None:
    assert (failure_for(error).status, failure_for(error).kind) == (status, kind)


def test_a_subclass_is_never_shadowed_by_its_base_in_the_error_table() -> None:
    kinds = [kind for kind, _ in FAILURES]
    for i, kind in enumerate(kinds):
        assert not any(issubclass(kind, earlier) for earlier in kinds[:i]), kind
    assert kinds[-1] is harpoon.HostedAIError


def test_every_error_type_is_snake_case() -> None:
    assert all(re.fullmatch(r"[a-z]+(_[a-z]+)*", f.kind) for _, f in FAILURES)


# GET /health and /metrics ---------------------------------------------------------------


def test_health_reports_the_api_and_every_deployment(service: httpx.Client) -> None:
    response = service.get("/health")
    assert response.status_code == 200
    body = response.json()
    assert (body["status"], body["api"], body["api_error"]) == ("ok", "ok", None)
    assert set(body["deployments"]) == {"gemma-3-270m", "qwen3-30b-a3b"}


def test_health_is_a_503_when_the_api_is_down(emulator: Emulator) -> None:
    emulator.faults = FaultPlan(rules=[Fault("error", status=503, path="/v1/health")])
    with served(emulator) as (http, _):
        response = http.get("/health")
    assert response.status_code == 503
    assert response.json()["status"] == "down"


def test_metrics_are_prometheus_text_counting_the_calls(service: httpx.Client) -> None:
    assert service.post("/v2/process", json={"text": "Hi"}).status_code == 200
    assert service.post("/v2/process", content=b"nope").status_code == 400
    response = service.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    samples = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in response.text.splitlines()
        if line and not line.startswith("#")
    }

    def sample(name: str, **labels: str) -> float:
        found = [
            value
            for key, value in samples.items()
            if key.startswith(name + "{") and all(f'{k}="{v}"' in key for k, v in labels.items())
        ]
        assert len(found) == 1, (name, labels, sorted(samples))
        return found[0]

    assert sample("harpoon_service_requests_total", deployment="gemma-3-270m", status="200") == 1
    assert sample("harpoon_service_requests_total", deployment="none", status="400") == 1
    assert sample("harpoon_service_duration_milliseconds_count", status="200") == 1
    assert sample("harpoon_service_tokens_total", deployment="gemma-3-270m") > 0
    assert sample("harpoon_service_warm_allocations", deployment="gemma-3-270m") == 1
    assert sample("harpoon_service_warm_allocations", deployment="qwen3-30b-a3b") == 0


# Shutting down ---------------------------------------------------------------------------


def test_stopping_the_service_lets_requests_in_flight_finish_then_releases_every_gpu(
    emulator: Emulator,
) -> None:
    emulator.faults = FaultPlan(rules=[Fault("latency", path="/v1/inference", delay=0.5)])
    texts = ["Hi", "Prove that there are infinitely many primes, and explain why.", "Hey"] * 2
    with served(emulator) as (http, server), ThreadPoolExecutor(len(texts)) as pool:
        calls = [pool.submit(http.post, "/v2/process", json={"text": t}) for t in texts]
        deadline = time.monotonic() + 10
        while len(emulator.live_allocations()) < 2:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert not any(call.done() for call in calls)
        server.should_exit = True
        statuses = [call.result().status_code for call in calls]
    assert statuses == [200] * len(texts)
    assert emulator.live_allocations() == []


def test_stopping_the_service_cut_short_still_releases_every_gpu(emulator: Emulator) -> None:
    emulator.faults = FaultPlan(rules=[Fault("latency", path="/v1/inference", delay=30)])
    with served(emulator, grace=0) as (http, server), ThreadPoolExecutor(4) as pool:
        calls = [pool.submit(http.post, "/v2/process", json={"text": "Hi"}) for _ in range(4)]
        deadline = time.monotonic() + 10
        while len(emulator.live_allocations()) < 1:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        server.should_exit = True
        outcomes: list[int | str] = []
        for call in calls:
            try:
                outcomes.append(call.result().status_code)
            except httpx.TransportError:
                outcomes.append("cut off")
    assert 200 not in outcomes
    assert emulator.live_allocations() == []
