"""The proof of concept's HTTP service, rebuilt on hostedai-harpoon with Starlette and uvicorn.

Run ``python examples/service/harpoon_service.py [--host 127.0.0.1] [--port 8080]`` (needs
the ``service`` extra: ``pip install 'hostedai-harpoon[service]'``). It serves the
embedded emulator's GPUs unless ``HOSTED_AI_BASE_URL`` (and ``HOSTED_AI_API_KEY``) name a
real endpoint, and says which at startup.

- ``POST /v2/process`` with ``{"text": "...", "deployment": "gemma-3-270m"}``: the text is
  routed by the Orchestrator, or pinned to the deployment named by ``deployment``
  (optional; the proof of concept's ``"HostedAI"`` also means "route it"), and the answer
  comes back with the decision and its reason. ``max_tokens`` is optional too; a request
  too large for every deployment is a 422. The body is read within ``--body-timeout``
  seconds and up to ``--max-body-bytes`` (408 and 413 past them).
- ``GET /health``: the Orchestrator's verdicts; 503 when it is down.
- ``GET /metrics``: Prometheus text, through OpenTelemetry's Prometheus exporter.

Every error is ``{"error": {"type", "message", "request_id"}}`` with a snake_case ``type``
and a fixed message per type (see ``FAILURES``): what an upstream said goes to the log
under the ``request_id``, never to the caller. Stopping the service (SIGTERM, Ctrl-C) gives
the requests in flight ``--grace`` seconds, answers those still running 503, then closes
the Orchestrator, which releases every GPU it holds.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import re
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
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
    from service_guards import (
        BODY_TIMEOUT,
        GRACE,
        MAX_BODY_BYTES,
        Failure,
        Limits,
        Refusal,
        Server,
        Shutdown,
        bad_request,
        error_response,
        masked,
        new_request_id,
        shutting_down,
    )
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

log = logging.getLogger("harpoon_service")

# The proof of concept's clients send the name of the deployment they want: "HostedAI".
ROUTE_FOR_ME = "hostedai"
MAX_TOKENS = 256
ENDPOINTS = "POST /v2/process, GET /health and GET /metrics"


# First match wins: subclasses come before the classes they derive from. The messages are
# fixed: what an upstream says (a careless or hostile server may say anything, the API key
# included) goes to the service's log, never to its callers.
FAILURES: tuple[tuple[type[harpoon.HostedAIError], Failure], ...] = (
    (harpoon.UsageError, Failure(500, "internal_error", "the service failed to handle this")),
    (
        harpoon.ConfigurationError,
        Failure(400, "bad_request", "no deployment can take a request like this one"),
    ),
    (harpoon.BudgetExceededError, Failure(429, "budget_exceeded", "the service's budget is spent")),
    (harpoon.OrchestratorClosedError, shutting_down().failure),
    (
        harpoon.AllAttemptsFailedError,
        Failure(503, "all_attempts_failed", "every deployment tried failed to answer; try again"),
    ),
    (
        harpoon.NoRouteError,
        Failure(503, "no_deployment_available", "no deployment can take requests now; try again"),
    ),
    (
        harpoon.UnprocessableEntityError,
        Failure(422, "unprocessable", "the GPU API could not process this request"),
    ),
    (
        harpoon.RateLimitError,
        Failure(429, "rate_limited", "the GPU API is rate limiting the service; try again"),
    ),
    (
        harpoon.APITimeoutError,
        Failure(504, "upstream_timeout", "the GPU API did not answer in time"),
    ),
    (harpoon.HostedAIError, Failure(502, "upstream_error", "the GPU API failed to answer")),
)


def failure_for(error: harpoon.HostedAIError) -> Failure:
    """What the service answers for an SDK error."""
    return next(failure for kind, failure in FAILURES if isinstance(error, kind))


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


def parse_process(body: bytes, deployments: Iterable[str]) -> tuple[str, str | None, int]:
    """``(text, deployment or None, max_tokens)`` from a ``POST /v2/process`` body."""
    try:
        data = json.loads(body)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise bad_request(f"the body is not JSON: {exc}") from None
    except RecursionError:
        raise bad_request("the body is nested too deeply") from None
    if not isinstance(data, dict):
        raise bad_request("the body must be a JSON object")
    if "text" not in data:
        raise bad_request('"text" is required: the text to process')
    text = data["text"]
    if not isinstance(text, str):
        raise bad_request(f'"text" must be a string, not {json_type(text)}')
    if not text.strip():
        raise bad_request('"text" must not be empty')
    deployment = data.get("deployment")
    names = sorted(deployments)
    choices = f'{", ".join(names)}, or "HostedAI" or null to let the service choose'
    if deployment is not None and not isinstance(deployment, str):
        raise bad_request(
            f'"deployment" must be a string or null, not {json_type(deployment)}: {choices}'
        )
    if deployment is not None and not deployment.strip():
        raise bad_request(f'"deployment" must not be empty: name one ({choices}) or leave it out')
    if deployment is not None and deployment.strip().lower() == ROUTE_FOR_ME:
        deployment = None
    if deployment is not None and deployment not in names:
        shown = json.dumps(deployment[:100])
        raise Refusal(400, "unknown_deployment", f"no deployment is named {shown}: {choices}")
    max_tokens = data.get("max_tokens", MAX_TOKENS)
    if type(max_tokens) is not int or max_tokens < 1:
        raise bad_request('"max_tokens" must be a whole number above 0')
    return text, deployment, max_tokens


def json_type(value: object) -> str:
    """The JSON name of a decoded value's type."""
    names = {bool: "a boolean", int: "a number", float: "a number", list: "an array"}
    return "null" if value is None else names.get(type(value), "an object")


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
                "error": None if attempt.error is None else failure_for(attempt.error).kind,
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

    def __init__(
        self,
        client: harpoon.AsyncHostedAI,
        registry: CollectorRegistry,
        shutdown: Shutdown,
        limits: Limits,
    ) -> None:
        self.orchestrator = harpoon.Orchestrator(client)
        self.names = {target.name for target in self.orchestrator.targets}
        self.shutdown = shutdown
        self.limits = limits
        self.secrets = [os.environ.get("HOSTED_AI_API_KEY", "").strip()]
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
        request_id = new_request_id()
        target: str | None = None
        try:
            body = await self.shutdown.read_body(request, self.limits)
            text, target, max_tokens = parse_process(body, self.names)
            routed = await self.shutdown.call(
                self.orchestrator.process(text, target=target, max_tokens=max_tokens)
            )
        except Refusal as refusal:
            self.record(started, target or "none", refusal.failure.status)
            close = refusal.close or self.shutdown.stopping
            return error_response(refusal.failure, request_id, close=close)
        except harpoon.HostedAIError as exc:
            failure = failure_for(exc)
            # AllAttemptsFailedError (not a NoRouteError) means a target did take the request;
            # a max_tokens past the API's bound is refused up front, a ConfigurationError.
            if type(exc) in (harpoon.NoRouteError, harpoon.ConfigurationError):
                failure = self.too_large(text, target, max_tokens) or failure
            log.warning("%s: %s; %s", request_id, failure.kind, masked(details(exc), self.secrets))
            self.record(started, target or "none", failure.status)
            return error_response(failure, request_id, close=self.shutdown.stopping)
        self.record(started, routed.target.name, 200, routed.result.usage.output_tokens)
        return JSONResponse(routed_json(routed), headers={"x-request-id": request_id})

    def too_large(self, text: str, target: str | None, max_tokens: int) -> Failure | None:
        """A 422 when no deployment (or not the one named) could ever take the request."""
        targets = self.orchestrator.targets
        if target is not None:
            targets = tuple(t for t in targets if t.name == target)
        why = too_large(text, max_tokens, targets)
        if why is None:
            return None
        which = "every deployment" if target is None else f"the deployment {target}"
        message = f"the request is too large for {which}: {why}"
        return Failure(422, "request_too_large", message)

    async def health(self, _request: Request) -> Response:
        """``GET /health``: the Orchestrator's verdicts on the API and on each target."""
        report = await self.orchestrator.health()
        api_error = None
        if report.api_error is not None:
            # "AuthenticationError: <what the server said>": the verdict, not the words.
            found = re.match(r"[A-Za-z]+Error\b", report.api_error)
            api_error = snake_case(found.group() if found else "UnknownError")
            log.warning("health: the API is down: %s", masked(report.api_error, self.secrets))
        body = {
            "status": report.verdict,
            "api": None if report.api is None else report.api.status,
            "api_error": api_error,
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


def details(error: harpoon.HostedAIError) -> str:
    """What the log keeps of an SDK error: its type, the upstream's status, code and request
    id when it has them, and its message."""
    facts = [type(error).__name__]
    if isinstance(error, harpoon.APIStatusError):
        facts.append(f"status={error.status_code} code={error.code} upstream={error.request_id}")
    return " ".join([*facts, "-", " ".join(str(error).split())])


def snake_case(name: str) -> str:
    """``AuthenticationError`` -> ``authentication_error``."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


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
    return error_response(
        Failure(error.status_code, kind, message), new_request_id(), headers=error.headers or {}
    )


async def internal_error(_request: Request, exc: Exception) -> Response:
    """A bug: a 500 in the service's envelope, its details in the log only."""
    request_id = new_request_id()
    log.error("%s: internal error: %s", request_id, type(exc).__name__)
    failure = Failure(500, "internal_error", "the service failed to handle this")
    return error_response(failure, request_id)


def create_app(
    client: harpoon.AsyncHostedAI | None = None,
    *,
    global_metrics: bool = False,
    grace: float = GRACE,
    limits: Limits | None = None,
) -> Starlette:
    """The service as an ASGI app. ``client=None``: one from :func:`default_client`, made
    now, so that a configuration mistake is a ``ConfigurationError`` here, not at startup.

    The Orchestrator and the metrics are set up when the app starts and shut down when it
    stops (its lifespan): stopping releases every GPU the Orchestrator holds. Served by
    :class:`Server`, requests in flight get ``grace`` seconds once it stops.
    ``global_metrics=True`` also installs the service's ``MeterProvider`` as OpenTelemetry's
    global one, so that metrics recorded through the OpenTelemetry API elsewhere in the
    process are exported too (a process has one global provider: set it once).
    """

    own_client = client is None
    http, emulator = default_client() if client is None else (client, None)
    shutdown = Shutdown(grace)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.emulator = emulator
        service = Service(http, CollectorRegistry(), shutdown, limits or Limits())
        if global_metrics:
            metrics.set_meter_provider(service.meter_provider)
        app.state.service = service
        try:
            async with service.orchestrator:
                yield
            await shutdown.settle()
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

    app = Starlette(
        routes=[
            Route("/v2/process", process, methods=["POST"]),
            Route("/health", health, methods=["GET"]),
            Route("/metrics", metrics_page, methods=["GET"]),
        ],
        exception_handlers={HTTPException: http_error, Exception: internal_error},
        lifespan=lifespan,
    )
    app.state.shutdown = shutdown
    return app


def main(argv: list[str] | None = None) -> None:
    """Serve the service with uvicorn until interrupted."""
    parser = argparse.ArgumentParser(description="The HostedAI service, on hostedai-harpoon.")
    parser.add_argument("--host", default="127.0.0.1", help="the address to listen on")
    parser.add_argument("--port", type=int, default=8080, help="the port to listen on")
    parser.add_argument(
        "--grace",
        type=float,
        default=GRACE,
        help="seconds the requests in flight get once the service is told to stop (default: "
        "%(default)s); the GPUs are released after it",
    )
    parser.add_argument(
        "--body-timeout",
        type=float,
        default=BODY_TIMEOUT,
        help="seconds a request body may take to arrive (default: %(default)s)",
    )
    parser.add_argument(
        "--max-body-bytes",
        type=int,
        default=MAX_BODY_BYTES,
        help="the largest request body taken (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    for name in ("grace", "body_timeout", "max_body_bytes"):
        if not getattr(args, name) > 0 or not math.isfinite(getattr(args, name)):
            parser.error(f"--{name.replace('_', '-')} must be a number above 0")
    limits = Limits(max_body_bytes=args.max_body_bytes, body_timeout=args.body_timeout)
    try:
        app = create_app(global_metrics=True, grace=args.grace, limits=limits)
    except harpoon.ConfigurationError as exc:
        parser.exit(2, f"{parser.prog}: error: {' '.join(str(exc).split())}\n")
    Server(app, args.host, args.port).run()


if __name__ == "__main__":
    main()
