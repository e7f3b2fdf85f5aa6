"""The live side: the tracer, the meter and the instruments, built once per provider pair."""

from __future__ import annotations

import os
from collections.abc import Mapping

from opentelemetry import metrics, trace
from opentelemetry.context import Context
from opentelemetry.metrics import _internal as metrics_api

from .._version import __version__
from . import _names as n
from ._hooks import AllocationTrace, Attributes, CallTrace, Operation, RouteTrace, SpanTrace


class Recorder:
    """Where the hooks record: a tracer and a meter named after the package, and every
    instrument the SDK feeds. ``None`` providers mean the global ones."""

    def __init__(
        self,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.tracer = trace.get_tracer(
            n.SCOPE_NAME, __version__, tracer_provider, schema_url=n.SCHEMA_URL
        )
        meter = metrics.get_meter(n.SCOPE_NAME, __version__, meter_provider, n.SCHEMA_URL)
        self.operation_duration = meter.create_histogram(
            n.GEN_AI_CLIENT_OPERATION_DURATION,
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=n.DURATION_BUCKETS,
        )
        self.token_usage = meter.create_histogram(
            n.GEN_AI_CLIENT_TOKEN_USAGE,
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=n.TOKEN_BUCKETS,
        )
        self.time_to_first_chunk = meter.create_histogram(
            n.GEN_AI_CLIENT_TIME_TO_FIRST_CHUNK,
            unit="s",
            description="Time to receive the first chunk of a streamed response.",
            explicit_bucket_boundaries_advisory=n.DURATION_BUCKETS,
        )
        self.http_duration = meter.create_histogram(
            n.HTTP_CLIENT_REQUEST_DURATION,
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=n.HTTP_BUCKETS,
        )
        self.retries = meter.create_counter(
            n.RETRIES, unit="{retry}", description="Attempts retried after a failed one."
        )
        self.allocations_active = meter.create_up_down_counter(
            n.ALLOCATION_ACTIVE, unit="{allocation}", description="Allocations leases hold now."
        )
        self.allocation_duration = meter.create_histogram(
            n.ALLOCATION_DURATION,
            unit="s",
            description="How long a lease held its allocation, from created to released.",
            explicit_bucket_boundaries_advisory=n.LEASE_BUCKETS,
        )
        self.allocation_wait = meter.create_histogram(
            n.ALLOCATION_WAIT,
            unit="s",
            description="Time from entering a lease to its allocation being ready.",
            explicit_bucket_boundaries_advisory=n.WAIT_BUCKETS,
        )
        self.release_failures = meter.create_counter(
            n.ALLOCATION_RELEASE_FAILURES,
            unit="{allocation}",
            description="Allocations whose release gave up (see client.orphans()).",
        )
        self.gpu_seconds = meter.create_counter(
            n.ALLOCATION_GPU_SECONDS,
            unit="s",
            description="GPU-seconds held by leases: GPUs times seconds held.",
        )
        self.cost = meter.create_counter(
            n.ALLOCATION_COST,
            unit="{USD}",
            description="Estimated cost of the GPU time held, where a price is known.",
        )
        self.route_decisions = meter.create_counter(
            n.ROUTE_DECISIONS, unit="{decision}", description="Routing decisions, by target."
        )
        self.failovers = meter.create_counter(
            n.FAILOVERS, unit="{failover}", description="Requests moved to another target."
        )
        self.circuit_transitions = meter.create_counter(
            n.CIRCUIT_TRANSITIONS,
            unit="{transition}",
            description="Circuit breaker state changes.",
        )

    @staticmethod
    def capture_content() -> bool:
        """Whether prompt and completion text go on spans (an opt-in environment switch)."""
        return os.environ.get(n.CAPTURE_CONTENT_ENV, "").strip().lower() in n.CAPTURE_CONTENT_ON

    def call(
        self,
        operation: Operation,
        body: Mapping[str, object] | None,
        model: str | None,
        parent: Context | None,
    ) -> CallTrace:
        """Start the span of one API call."""
        from ._calls import LiveCall

        return LiveCall(self, operation, body, model, parent)

    def allocation(
        self,
        model: str,
        gpus: int,
        gpu_type: str | None,
        pool: str | None,
        cost_per_gpu_hour: float | None,
        parent: Context | None,
    ) -> AllocationTrace:
        """Start the span of one lease."""
        from ._leases import LiveAllocation

        return LiveAllocation(self, model, gpus, gpu_type, pool, cost_per_gpu_hour, parent)

    def span(
        self, name: str, attributes: Attributes | None, parent: Context | None, client: bool
    ) -> SpanTrace:
        """Start a span of the SDK's own (an orchestrator call, say)."""
        from ._spans import LiveSpan, start

        kind = trace.SpanKind.CLIENT if client else trace.SpanKind.INTERNAL
        return LiveSpan(*start(self.tracer, name, kind, attributes, parent))

    def route(self, policy: str, parent: Context | None) -> RouteTrace:
        """Start the span of one routing decision."""
        from ._spans import LiveRoute

        return LiveRoute(self, policy, parent)

    def failed_over(
        self, source: str, target: str, error: BaseException | None, on: SpanTrace | None
    ) -> None:
        """Count a request moved from ``source`` to ``target`` and note it on ``on`` (or
        on the current span)."""
        from ._spans import error_type

        attributes = {n.FAILOVER_FROM: source, n.ROUTE_TARGET: target}
        if error is not None:
            attributes[n.ERROR_TYPE] = error_type(error)
        self.failovers.add(1, attributes)
        if on is not None:
            on.event(n.EVENT_FAILOVER, attributes)
            return
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(n.EVENT_FAILOVER, attributes)

    def breaker_moved(self, name: str, old: str, new: str) -> None:
        """Count a breaker transition, and note it on the span current now, if any."""
        attributes = {n.CIRCUIT: name, n.CIRCUIT_FROM: old, n.CIRCUIT_TO: new}
        self.circuit_transitions.add(1, attributes)
        span = trace.get_current_span()
        if span.is_recording():
            span.add_event(n.EVENT_CIRCUIT, attributes)


_latched: Recorder | None = None
_quiet: tuple[object, object] | None = None

# Where the API keeps the global providers (``None`` until one is set). A private detail,
# read only as a shortcut: if it ever moves, ``_MISSING`` sends every check the public way.
_MISSING = object()
_API_GLOBALS = (vars(trace), vars(metrics_api))
_ENV_PROVIDERS = any(
    name in os.environ for name in ("OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER")
)


def _records(provider: object) -> bool:
    # The API's own providers (proxies until one is set, no-ops) record nothing.
    return not type(provider).__module__.startswith(
        ("opentelemetry.trace", "opentelemetry.metrics")
    )


def global_recorder() -> Recorder | None:
    """The recorder on the global providers once one of them is an SDK's, else None."""
    global _latched, _quiet
    if _latched is not None:
        return _latched
    if (
        not _ENV_PROVIDERS
        and _API_GLOBALS[0].get("_TRACER_PROVIDER", _MISSING) is None
        and _API_GLOBALS[1].get("_METER_PROVIDER", _MISSING) is None
    ):
        return None
    tracer_provider, meter_provider = trace.get_tracer_provider(), metrics.get_meter_provider()
    quiet = _quiet
    if quiet is not None and quiet[0] is tracer_provider and quiet[1] is meter_provider:
        return None
    if _records(tracer_provider) or _records(meter_provider):
        _latched = Recorder()
        return _latched
    _quiet = (tracer_provider, meter_provider)
    return None
