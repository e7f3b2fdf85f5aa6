"""The lease, routing, failover and breaker hooks against the real SDK."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import hostedai_harpoon as harpoon
from hostedai_harpoon import AllocationError, NoRouteError
from hostedai_harpoon._models import Allocation, AllocationStatus
from hostedai_harpoon._telemetry import (
    Operation,
    breaker_moved,
    failed_over,
    priced,
    start_allocation,
    start_call,
    start_route,
    start_span,
)
from hostedai_harpoon._telemetry._hooks import NO_ALLOCATION, NO_ROUTE, NO_SPAN
from tests.telemetry.conftest import Telemetry


def allocation(gpu_type: str | None = "h100") -> Allocation:
    return Allocation(
        id="alloc-9",
        pool_id="gpu-pool-1",
        model="gemma-3-270m",
        gpu_count=2,
        gpu_type=gpu_type,
        status=AllocationStatus.READY,
        endpoint=None,
        created_at=datetime.now(UTC),
        expires_at=None,
        ttl_seconds=120,
    )


def run_lease(final: str = "released") -> None:
    with priced(3.6):
        lease = start_allocation(model="gemma-3-270m", gpus=2)
    create = lease.phase("create")
    start_call(Operation("create_allocation", "/v1/allocate"), parent=create.context).succeeded()
    create.end()
    lease.allocated(allocation())
    lease.moved("creating", "waiting")
    lease.phase("wait_ready").end()
    lease.moved("waiting", "active")
    lease.phase("renew").end()
    lease.moved("active", "releasing")
    release = lease.phase("release")
    if final == "orphaned":
        error = AllocationError("release gave up")
        release.end(error)
        lease.errored(error)
    else:
        release.end()
    lease.moved("releasing", final)


def test_a_lease_is_a_span_with_its_phases_and_transitions(otel: Telemetry) -> None:
    run_lease()
    lease = otel.span("allocation gemma-3-270m")
    assert lease.kind is SpanKind.INTERNAL
    assert dict(lease.attributes or {}) == {
        "hostedai.model": "gemma-3-270m",
        "hostedai.gpu.count": 2,
        "hostedai.allocation.id": "alloc-9",
        "hostedai.pool": "gpu-pool-1",
        "hostedai.gpu.type": "h100",
        "hostedai.lease.state": "released",
    }
    moves = [
        (event.attributes or {})["hostedai.lease.state"]
        for event in lease.events
        if event.name == "hostedai.lease.transition"
    ]
    assert moves == ["waiting", "active", "releasing", "released"]
    for phase in ("create", "wait_ready", "renew", "release"):
        span = otel.span(f"allocation.{phase}")
        assert span.parent is not None
        assert span.parent.span_id == lease.context.span_id
        assert (span.attributes or {})["hostedai.lease.phase"] == phase
    call = otel.span("create_allocation")
    assert call.parent is not None
    assert call.parent.span_id == otel.span("allocation.create").context.span_id


def test_lease_metrics_count_what_is_held_and_for_how_long(otel: Telemetry) -> None:
    with priced(3.6):
        lease = start_allocation(model="gemma-3-270m", gpus=2)
    lease.allocated(allocation())
    lease.moved("creating", "active")
    (held,) = otel.points("hostedai.allocation.active")
    assert held.value == 1
    assert dict(held.attributes) == {
        "hostedai.model": "gemma-3-270m",
        "hostedai.gpu.count": 2,
        "hostedai.pool": "gpu-pool-1",
        "hostedai.gpu.type": "h100",
    }
    lease.moved("active", "releasing")
    lease.moved("releasing", "released")
    metrics = otel.metrics()
    (held,) = otel.points("hostedai.allocation.active")
    assert held.value == 0
    (duration,) = otel.points("hostedai.allocation.duration")
    (gpu_seconds,) = otel.points("hostedai.allocation.gpu_seconds")
    (cost,) = otel.points("hostedai.allocation.cost")
    assert duration.count == 1
    assert gpu_seconds.value == pytest.approx(duration.sum * 2)
    assert cost.value == pytest.approx(duration.sum * 2 * 3.6 / 3600)
    (wait,) = otel.points("hostedai.allocation.wait")
    assert wait.count == 1
    assert metrics["hostedai.allocation.gpu_seconds"].unit == "s"
    assert metrics["hostedai.allocation.wait"].unit == "s"
    assert "hostedai.allocation.release_failures" not in metrics
    for name in metrics:
        for point in otel.points(name):
            assert "hostedai.allocation.id" not in point.attributes


def test_an_orphaned_lease_counts_a_release_failure_and_fails_its_span(otel: Telemetry) -> None:
    run_lease("orphaned")
    (failures,) = otel.points("hostedai.allocation.release_failures")
    assert failures.value == 1
    lease = otel.span("allocation gemma-3-270m")
    assert lease.status.status_code is StatusCode.ERROR
    assert (lease.attributes or {})["error.type"] == "hostedai_harpoon.AllocationError"
    assert otel.span("allocation.release").status.status_code is StatusCode.ERROR


def test_a_lease_that_never_got_an_allocation_counts_nothing_held(otel: Telemetry) -> None:
    lease = start_allocation(model="m", gpus=1)
    lease.errored(AllocationError("no capacity"))
    lease.moved("creating", "releasing")
    lease.moved("releasing", "released")
    metrics = otel.metrics()
    assert "hostedai.allocation.duration" not in metrics
    assert "hostedai.allocation.active" not in metrics
    assert otel.names() == ["allocation m"]


def test_a_route_decision_is_a_span_and_a_count_by_target_and_policy(otel: Telemetry) -> None:
    small, large = harpoon.DEFAULT_TARGETS
    route = start_route(harpoon.ComplexityPolicy())
    route.decided(
        harpoon.RouteDecision(large, "complexity 0.71 >= 0.5", {"complexity": 0.71}, (small,))
    )
    span = otel.span("route ComplexityPolicy")
    assert dict(span.attributes or {}) == {
        "hostedai.operation": "route",
        "hostedai.route.policy": "ComplexityPolicy",
        "hostedai.route.target": "qwen3-30b-a3b",
        "hostedai.route.reason": "complexity 0.71 >= 0.5",
        "hostedai.route.score": 0.71,
        "hostedai.route.fallbacks": ("gemma-3-270m",),
    }
    (decisions,) = otel.points("hostedai.route.decisions")
    assert decisions.value == 1
    assert dict(decisions.attributes) == {
        "hostedai.route.target": "qwen3-30b-a3b",
        "hostedai.route.policy": "ComplexityPolicy",
    }


def test_no_route_fails_the_route_span_and_counts_no_decision(otel: Telemetry) -> None:
    start_route(harpoon.CostPolicy()).end(NoRouteError("no healthy target", reasons={}))
    assert otel.span("route CostPolicy").status.status_code is StatusCode.ERROR
    assert "hostedai.route.decisions" not in otel.metrics()


def test_orchestrator_spans_nest_route_lease_and_failover(otel: Telemetry) -> None:
    call = start_span("orchestrator.process", {"hostedai.route.policy": "CostPolicy"})
    target = harpoon.Target("a", tier="small")
    start_route(harpoon.CostPolicy(), parent=call.context).decided(
        harpoon.RouteDecision(target, "cheap")
    )
    lease = start_allocation(model="a", gpus=1, parent=call.context)
    lease.moved("creating", "releasing")
    lease.moved("releasing", "released")
    failed_over("a", "b", TimeoutError("slow"), call)
    call.end()
    root = otel.span("orchestrator.process")
    for child in ("route CostPolicy", "allocation a"):
        parent = otel.span(child).parent
        assert parent is not None
        assert parent.span_id == root.context.span_id
    (event,) = root.events
    assert event.name == "hostedai.failover"
    assert event.attributes == {
        "hostedai.failover.from": "a",
        "hostedai.route.target": "b",
        "error.type": "TimeoutError",
    }
    (failovers,) = otel.points("hostedai.failovers")
    assert failovers.value == 1
    assert dict(failovers.attributes) == dict(event.attributes)


def test_breaker_transitions_are_counted_and_noted_on_the_current_span(otel: Telemetry) -> None:
    tracer = otel.tracer_provider.get_tracer("user")
    with tracer.start_as_current_span("user"):
        breaker_moved("api.example.com", "closed", "open")
    breaker_moved("api.example.com", "open", "half_open")
    points = {
        point.attributes["hostedai.circuit.state"]: point
        for point in otel.points("hostedai.circuit.transitions")
    }
    assert points["open"].value == 1
    assert dict(points["open"].attributes) == {
        "hostedai.circuit.name": "api.example.com",
        "hostedai.circuit.state.from": "closed",
        "hostedai.circuit.state": "open",
    }
    (event,) = otel.span("user").events
    assert event.name == "hostedai.circuit.transition"


def test_without_a_recorder_every_hook_is_the_shared_no_op() -> None:
    assert start_allocation(model="m", gpus=1) is NO_ALLOCATION
    assert start_route(harpoon.CostPolicy()) is NO_ROUTE
    assert start_span("s") is NO_SPAN
    assert NO_ALLOCATION.phase("create") is NO_SPAN
    failed_over("a", "b", RuntimeError(), NO_SPAN)
    breaker_moved("h", "closed", "open")
