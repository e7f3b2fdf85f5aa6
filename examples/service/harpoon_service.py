"""The proof of concept's HTTP service, rebuilt on hostedai-harpoon with Starlette and uvicorn.

Run ``python examples/service/harpoon_service.py [--host 127.0.0.1] [--port 8080]`` (needs
the ``service`` extra: ``pip install 'hostedai-harpoon[service]'``). It serves the
embedded emulator's GPUs unless ``HOSTED_AI_BASE_URL`` (and ``HOSTED_AI_API_KEY``) name a
real endpoint, and says which at startup.

- ``POST /v2/process`` with ``{"text": "...", "deployment": "gemma-3-270m"}``: the text is
  routed by the Orchestrator, or pinned to the target named by ``deployment`` (optional;
  the proof of concept's ``"HostedAI"`` also means "route it"), and the answer comes back
  with the decision and its reason. ``max_tokens`` is optional too; a request too large
  for every target (``max_tokens`` or the prompt beyond every target's limits) is a 422.
- ``GET /health``: the Orchestrator's health report; 503 when it is down.
- ``GET /metrics``: Prometheus text, through OpenTelemetry's Prometheus exporter.

Bad JSON or a missing or ill-typed field is a 400 with a JSON error; the SDK's errors map
to an HTTP status (see ``STATUS_BY_ERROR``); an unknown path (404) or method (405) gets the
same JSON envelope. Shutting the service down closes the Orchestrator, which releases every
GPU it holds.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any, cast

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator

try:
    import uvicorn
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.requests import Request
    from starlette.responses import JSONResponse, Response
    from starlette.routing import Route
except ModuleNotFoundError as missing:
    _NEEDS_EXTRA = (
        f"the service needs the 'service' extra ({missing.name} is not installed): "
        "pip install 'hostedai-harpoon[service]'"
    )
    if __name__ == "__main__":
        raise SystemExit(_NEEDS_EXTRA) from None
    raise ModuleNotFoundError(_NEEDS_EXTRA, name=missing.name) from None

# The proof of concept's clients send the name of the deployment they want: "HostedAI".
ROUTE_FOR_ME = "hostedai"
MAX_TOKENS = 256
ENDPOINTS = "POST /v2/process, GET /health and GET /metrics"

# First match wins: subclasses come before the classes they derive from.
STATUS_BY_ERROR: tuple[tuple[type[harpoon.HostedAIError], int], ...] = (
    (harpoon.UsageError, 500),
    (harpoon.ConfigurationError, 400),
    (harpoon.BudgetExceededError, 429),
    (harpoon.OrchestratorClosedError, 503),
    (harpoon.NoRouteError, 503),
    (harpoon.AllAttemptsFailedError, 503),
    (harpoon.UnprocessableEntityError, 422),
    (harpoon.RateLimitError, 429),
    (harpoon.APITimeoutError, 504),
)


class BadRequest(Exception):
    """The request's body is not what ``POST /v2/process`` takes."""


def status_for(error: harpoon.HostedAIError) -> int:
    """The HTTP status the service answers for an SDK error (502 for the rest: the
    upstream API, or the service's use of it, failed)."""
    for kind, status in STATUS_BY_ERROR:
        if isinstance(error, kind):
            return status
    return 502


def error_response(status: int, kind: str, message: str) -> JSONResponse:
    """The service's error envelope."""
    return JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)


def too_large(text: str, max_tokens: int, targets: Iterable[harpoon.Target]) -> str | None:
    """Why the request is too large for each of ``targets``; None when one could take it.

    Decided on the targets' limits, whatever their health: a request no target could ever
    take is the caller's mistake (422), not an outage (503).
    """
    needed = harpoon.RouteRequest(text, max_tokens).prompt_tokens + max_tokens
    reasons = []
    for target in targets:
        if max_tokens > target.max_tokens:
            reasons.append(f"{target.name} takes max_tokens up to {target.max_tokens}")
        elif needed > target.context_tokens:
            reasons.append(
                f"{target.name}'s context window holds {target.context_tokens} tokens, the "
                f"text and max_tokens need about {needed}"
            )
        else:
            return None
    return "; ".join(reasons) or None


def parse_process(body: bytes) -> tuple[str, str | None, int]:
    """``(text, target or None, max_tokens)`` from a ``POST /v2/process`` body."""
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadRequest(f"the body is not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequest("the body must be a JSON object")
    text = data.get("text")
    if not isinstance(text, str) or not text.strip():
        raise BadRequest('"text" is required: a non-empty string')
    deployment = data.get("deployment")
    if deployment is not None and not isinstance(deployment, str):
        raise BadRequest('"deployment" must be a string (a target name) or null')
    if deployment is not None and deployment.strip().lower() in ("", ROUTE_FOR_ME):
        deployment = None
    max_tokens = data.get("max_tokens", MAX_TOKENS)
    if type(max_tokens) is not int or max_tokens < 1:
        raise BadRequest('"max_tokens" must be a whole number above 0')
    return text, deployment, max_tokens


def routed_json(routed: harpoon.RoutedResult) -> dict[str, Any]:
    """What ``POST /v2/process`` answers."""
    result = routed.result
    return {
        "text": result.text,
        "deployment": routed.target.name,
        "model": result.model,
        "reason": routed.decision.reason,
        "finish_reason": result.finish_reason,
        "usage": {
            "input_tokens": result.usage.input_tokens,
            "output_tokens": result.usage.output_tokens,
        },
        "latency_ms": round(routed.latency * 1000, 3),
        "cost": routed.cost,
        "attempts": [
            {
                "deployment": attempt.target.name,
                "error": None if attempt.error is None else type(attempt.error).__name__,
            }
            for attempt in routed.attempts
        ],
        "request_id": result.request_id,
    }


def default_client() -> tuple[harpoon.AsyncHostedAI, Emulator | None]:
    """A client for ``HOSTED_AI_BASE_URL`` when it is set, else for an embedded emulator.

    Raises ``ConfigurationError`` when ``HOSTED_AI_BASE_URL`` is set without a usable
    ``HOSTED_AI_API_KEY``, or is not a URL the SDK accepts.
    """
    base_url = os.environ.get("HOSTED_AI_BASE_URL", "").strip()
    if base_url:
        if not os.environ.get("HOSTED_AI_API_KEY", "").strip():
            raise harpoon.ConfigurationError(
                "HOSTED_AI_BASE_URL is set but HOSTED_AI_API_KEY is not: set the endpoint's "
                "API key too, or unset HOSTED_AI_BASE_URL to serve the embedded emulator"
            )
        client = harpoon.AsyncHostedAI()
        print(f"serving {base_url} (from HOSTED_AI_BASE_URL)")
        return client, None
    print("serving the embedded emulator (set HOSTED_AI_BASE_URL for a real endpoint)")
    emulator = Emulator(latency_scale=0.05)
    client = harpoon.AsyncHostedAI(
        "http://127.0.0.1:8080", "service-key", http_client=emulator.async_http_client()
    )
    return client, emulator


class Service:
    """The service's state for one run: the Orchestrator and the metrics it reports."""

    def __init__(self, client: harpoon.AsyncHostedAI, registry: CollectorRegistry) -> None:
        self.orchestrator = harpoon.Orchestrator(client)
        self.names = {target.name for target in self.orchestrator.targets}
        self.registry = registry
        self.reader = PrometheusMetricReader(registry=registry)
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        meter = self.meter_provider.get_meter("harpoon_service")
        self.requests = meter.create_counter(
            "harpoon_service.requests", unit="1", description="POST /v2/process calls answered"
        )
        self.duration = meter.create_histogram(
            "harpoon_service.duration", unit="ms", description="POST /v2/process time"
        )
        self.tokens = meter.create_counter(
            "harpoon_service.tokens", unit="1", description="Tokens generated"
        )
        meter.create_observable_gauge(
            "harpoon_service.warm_allocations",
            callbacks=[self._warm_allocations],
            unit="1",
            description="Allocations the Orchestrator holds, per target",
        )

    def _warm_allocations(self, _options: CallbackOptions) -> Iterable[Observation]:
        for name, stats in self.orchestrator.snapshot().targets.items():
            yield Observation(stats.warm_allocations, {"deployment": name})

    def record(self, started: float, deployment: str, status: int, tokens: int = 0) -> None:
        """Count one answered ``POST /v2/process``."""
        # Only known names become label values: a caller must not mint new time series.
        if deployment not in self.names:
            deployment = "none"
        attributes = {"deployment": deployment, "status": str(status)}
        self.requests.add(1, attributes)
        self.duration.record((time.perf_counter() - started) * 1000, attributes)
        if tokens:
            self.tokens.add(tokens, {"deployment": deployment})

    async def process(self, request: Request) -> Response:
        """``POST /v2/process``: route the text (or pin it) and answer with the result."""
        started = time.perf_counter()
        try:
            text, target, max_tokens = parse_process(await request.body())
        except BadRequest as exc:
            self.record(started, "none", 400)
            return error_response(400, "bad_request", str(exc))
        try:
            routed = await self.orchestrator.process(text, target=target, max_tokens=max_tokens)
        except harpoon.HostedAIError as exc:
            # AllAttemptsFailedError (not a NoRouteError) means a target did take the request;
            # a max_tokens past the API's bound is refused up front, a ConfigurationError.
            if type(exc) in (harpoon.NoRouteError, harpoon.ConfigurationError):
                targets = self.orchestrator.targets
                if target is not None:
                    targets = tuple(t for t in targets if t.name == target)
                why = too_large(text, max_tokens, targets)
                if why is not None:
                    which = "every deployment" if target is None else f"the deployment {target}"
                    self.record(started, target or "none", 422)
                    message = f"the request is too large for {which}: {why}"
                    return error_response(422, "request_too_large", message)
            status = status_for(exc)
            self.record(started, target or "none", status)
            return error_response(status, type(exc).__name__, " ".join(str(exc).split()))
        self.record(started, routed.target.name, 200, routed.result.usage.output_tokens)
        return JSONResponse(routed_json(routed))

    async def health(self, _request: Request) -> Response:
        """``GET /health``: the Orchestrator's verdict, the API's and each target's."""
        report = await self.orchestrator.health()
        body = {
            "status": report.verdict,
            "api": None if report.api is None else report.api.status,
            "api_error": report.api_error,
            "deployments": {
                name: {
                    "status": target.verdict,
                    "circuit": target.circuit.value,
                    "in_flight": target.in_flight,
                    "warm_allocations": target.warm_allocations,
                }
                for name, target in report.targets.items()
            },
        }
        return JSONResponse(body, status_code=503 if report.verdict == "down" else 200)

    async def metrics(self, _request: Request) -> Response:
        """``GET /metrics``: every metric in the Prometheus text format."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


async def http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (an unknown path, a method a path does not take) in the
    service's JSON envelope."""
    error = cast(HTTPException, exc)  # registered for HTTPException only
    where = f"{request.method} {request.url.path}"
    if error.status_code == 404:
        message = f"no such endpoint: {where}; the service serves {ENDPOINTS}"
    elif error.status_code == 405:
        allowed = (error.headers or {}).get("Allow", "")
        message = f"{request.url.path} does not take {request.method}; it takes {allowed}"
    else:
        message = f"{where}: {error.detail}"
    kind = HTTPStatus(error.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    response = error_response(error.status_code, kind, message)
    response.headers.update(error.headers or {})
    return response


def create_app(
    client: harpoon.AsyncHostedAI | None = None, *, global_metrics: bool = False
) -> Starlette:
    """The service as an ASGI app. ``client=None``: one from :func:`default_client`, made
    now, so that a configuration mistake is a ``ConfigurationError`` here, not at startup.

    The Orchestrator and the metrics are set up when the app starts and shut down when it
    stops (its lifespan): stopping releases every GPU the Orchestrator holds.
    ``global_metrics=True`` also installs the service's ``MeterProvider`` as OpenTelemetry's
    global one, so that metrics recorded through the OpenTelemetry API elsewhere in the
    process are exported too (a process has one global provider: set it once).
    """

    own_client = client is None
    http, emulator = default_client() if client is None else (client, None)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.emulator = emulator
        service = Service(http, CollectorRegistry())
        if global_metrics:
            metrics.set_meter_provider(service.meter_provider)
        app.state.service = service
        try:
            async with service.orchestrator:
                yield
        finally:
            service.meter_provider.shutdown()
            if own_client:
                await http.aclose()

    async def process(request: Request) -> Response:
        service: Service = request.app.state.service
        return await service.process(request)

    async def health(request: Request) -> Response:
        service: Service = request.app.state.service
        return await service.health(request)

    async def metrics_page(request: Request) -> Response:
        service: Service = request.app.state.service
        return await service.metrics(request)

    return Starlette(
        routes=[
            Route("/v2/process", process, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics_page, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error},
        lifespan=lifespan,
    )


def main(argv: list[str] | None = None) -> None:
    """Serve the service with uvicorn until interrupted."""
    parser = argparse.ArgumentParser(description="The HostedAI service, on hostedai-harpoon.")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="the port to listen on")
    args = parser.parse_args(argv)
    try:
        app = create_app(global_metrics=True)
    except harpoon.ConfigurationError as exc:
        parser.exit(2, f"{parser.prog}: error: {' '.join(str(exc).split())}\n")
    uvicorn.run(app, host=args.host, port=args.port)


if __name__ == "__main__":
    main()
