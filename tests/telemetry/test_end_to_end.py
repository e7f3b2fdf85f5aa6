"""The telemetry of real calls, from the sync and the async client, against the emulator:
what a user of an SDK would see for success, retry, failure, cancellation and streams."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, Fault, FaultPlan
from tests.client._support import API_KEY, BASE_URL, AnyClient, Flavor, call, close, take
from tests.telemetry.conftest import Telemetry

MODEL = "gemma-3-270m"
FAST = harpoon.RetryPolicy(max_retries=2, initial_backoff=0.001, max_backoff=0.001, jitter=False)


@pytest.fixture
async def clients(flavor: Flavor) -> AsyncIterator[Any]:
    """Build a client of the test's flavor over an emulator's in-process transport."""
    made: list[tuple[AnyClient, httpx.Client | httpx.AsyncClient]] = []

    def factory(emu: Emulator, **kwargs: Any) -> AnyClient:
        kwargs.setdefault("retry", FAST)
        client: AnyClient
        http: httpx.Client | httpx.AsyncClient
        if flavor == "sync":
            http = emu.http_client()
            client = harpoon.HostedAI(BASE_URL, API_KEY, http_client=http, **kwargs)
        else:
            http = emu.async_http_client()
            client = harpoon.AsyncHostedAI(BASE_URL, API_KEY, http_client=http, **kwargs)
        made.append((client, http))
        return client

    yield factory
    for client, http in made:
        await close(client)
        if isinstance(http, httpx.AsyncClient):
            await http.aclose()
        else:
            http.close()


def children(otel: Telemetry, parent: ReadableSpan, name: str | None = None) -> list[ReadableSpan]:
    return [
        span
        for span in otel.spans()
        if span.parent is not None
        and span.parent.span_id == parent.context.span_id
        and (name is None or span.name == name)
    ]


async def allocation_id(client: AnyClient) -> str:
    allocation: harpoon.Allocation = await call(client, "create_allocation", model=MODEL)
    return allocation.id


async def test_a_successful_inference_is_a_call_span_over_one_attempt(
    otel: Telemetry, clients: Any
) -> None:
    client = clients(Emulator())
    allocation = await allocation_id(client)
    result = await call(client, "infer", allocation, "Hello", model=MODEL, max_tokens=8)

    span = otel.span(f"text_completion {MODEL}")
    assert span.kind is SpanKind.CLIENT
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.provider.name"] == "hostedai"
    assert attributes["gen_ai.request.max_tokens"] == 8
    assert attributes["gen_ai.response.id"] == result.id
    assert attributes["gen_ai.usage.output_tokens"] == result.usage.output_tokens
    assert attributes["gen_ai.response.finish_reasons"] == (result.finish_reason,)
    assert attributes["server.address"] == "127.0.0.1"
    (attempt,) = children(otel, span)
    assert attempt.name == "POST /v1/inference"
    assert (attempt.attributes or {})["http.response.status_code"] == 200
    assert (attempt.attributes or {})["url.full"] == f"{BASE_URL}/v1/inference"
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert duration.attributes["gen_ai.request.model"] == MODEL
    assert "error.type" not in duration.attributes


async def test_a_retried_call_has_an_attempt_span_per_try(otel: Telemetry, clients: Any) -> None:
    emu = Emulator(faults=FaultPlan(rules=[Fault("error", status=503, path="/v1/pools", times=1)]))
    await call(clients(emu), "list_pools")

    span = otel.span("list_pools")
    first, second = children(otel, span, "GET /v1/pools")
    assert (first.attributes or {})["error.type"] == "503"
    assert (second.attributes or {})["http.request.resend_count"] == 1
    assert span.status.status_code is StatusCode.UNSET
    assert [event.name for event in span.events] == ["hostedai.retry"]
    (retries,) = otel.points("hostedai.retries")
    assert retries.value == 1
    assert dict(retries.attributes) == {
        "hostedai.operation": "list_pools",
        "error.type": "hostedai_harpoon.InternalServerError",
    }


async def test_a_failed_inference_carries_the_error_class(otel: Telemetry, clients: Any) -> None:
    emu = Emulator(faults=FaultPlan(rules=[Fault("error", status=500, path="/v1/inference")]))
    client = clients(emu)
    allocation = await allocation_id(client)
    with pytest.raises(harpoon.InternalServerError):
        await call(client, "infer", allocation, "Hello", model=MODEL)

    span = otel.span(f"text_completion {MODEL}")
    assert span.status.status_code is StatusCode.ERROR
    assert (span.attributes or {})["error.type"] == "hostedai_harpoon.InternalServerError"
    # Inference is not idempotent: a 500 may have run the work, so it is not retried.
    (attempt,) = children(otel, span)
    assert (attempt.attributes or {})["error.type"] == "500"
    (duration,) = otel.points("gen_ai.client.operation.duration")
    assert duration.attributes["error.type"] == "hostedai_harpoon.InternalServerError"


async def test_a_stream_records_first_chunk_usage_and_finish(otel: Telemetry, clients: Any) -> None:
    client = clients(Emulator())
    allocation = await allocation_id(client)
    chunks = await take(await call(client, "stream", allocation, "Tell me", model=MODEL))

    span = otel.span(f"text_completion {MODEL}")
    attributes = dict(span.attributes or {})
    assert attributes["gen_ai.request.stream"] is True
    assert attributes["gen_ai.response.finish_reasons"] == (chunks[-1].finish_reason,)
    usage = chunks[-1].usage
    assert usage is not None
    assert attributes["gen_ai.usage.output_tokens"] == usage.output_tokens
    assert isinstance(attributes["gen_ai.response.time_to_first_chunk"], float)
    assert len(children(otel, span, "POST /v1/inference")) == 1
    assert otel.points("gen_ai.client.operation.time_to_first_chunk")[0].count == 1


async def test_a_stream_left_early_still_ends_its_span(otel: Telemetry, clients: Any) -> None:
    client = clients(Emulator())
    allocation = await allocation_id(client)
    stream = await call(client, "stream", allocation, "Tell me a long story", model=MODEL)
    (chunk,) = await take(stream, 1)
    span = otel.span(f"text_completion {MODEL}")
    assert "gen_ai.response.finish_reasons" not in (span.attributes or {})
    assert (span.attributes or {})["gen_ai.response.id"] == chunk.id


async def test_a_lease_nests_its_phases_and_inference_under_the_allocation(
    otel: Telemetry, clients: Any, flavor: Flavor
) -> None:
    client = clients(Emulator(ready_delay=0.05))
    if flavor == "sync":
        with client.allocate(model=MODEL) as lease:
            lease.infer("Hello", max_tokens=8)
    else:
        async with client.allocate(model=MODEL) as lease:
            await lease.infer("Hello", max_tokens=8)

    root = otel.span(f"allocation {MODEL}")
    attributes = dict(root.attributes or {})
    assert attributes["hostedai.allocation.id"] == lease.id
    assert attributes["hostedai.lease.state"] == "released"
    states = [(e.attributes or {})["hostedai.lease.state"] for e in root.events]
    assert states == ["waiting", "active", "releasing", "released"]
    phases = {span.name for span in children(otel, root)}
    assert {"allocation.create", "allocation.wait_ready", "allocation.release"} <= phases
    assert f"text_completion {MODEL}" in phases
    (create,) = children(otel, otel.span("allocation.create"))
    assert create.name == "create_allocation"
    assert children(otel, otel.span("allocation.release"))[0].name == "release_allocation"
    (held,) = otel.points("hostedai.allocation.active")
    assert held.value == 0
    assert otel.points("hostedai.allocation.wait")[0].count == 1
    assert otel.points("hostedai.allocation.duration")[0].count == 1


async def test_a_lease_left_by_an_exception_records_its_release(
    otel: Telemetry, clients: Any, flavor: Flavor
) -> None:
    client = clients(Emulator())

    async def fail_inside() -> None:
        if flavor == "sync":
            with client.allocate(model=MODEL):
                raise KeyError("user code failed")
        async with client.allocate(model=MODEL):
            raise KeyError("user code failed")

    with pytest.raises(KeyError):
        await fail_inside()
    root = otel.span(f"allocation {MODEL}")
    assert (root.attributes or {})["hostedai.lease.state"] == "released"
    (held,) = otel.points("hostedai.allocation.active")
    assert held.value == 0


async def test_an_async_call_cancelled_mid_request_ends_as_cancelled(otel: Telemetry) -> None:
    emu = Emulator(faults=FaultPlan(rules=[Fault("latency", delay=30, path="/v1/pools", times=1)]))
    async with emu.async_http_client() as http:
        client = harpoon.AsyncHostedAI(BASE_URL, API_KEY, http_client=http)
        task = asyncio.create_task(client.list_pools())
        while not emu.exchanges and not task.done():
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await client.close()
    span = otel.span("list_pools")
    assert (span.attributes or {})["error.type"] == "cancelled"
    (attempt,) = children(otel, span)
    assert (attempt.attributes or {})["error.type"] == "cancelled"


def test_route_records_its_decision_and_its_refusals(otel: Telemetry) -> None:
    policy = harpoon.ComplexityPolicy()
    decision = harpoon.route(policy, harpoon.RouteRequest("Hi"), harpoon.DEFAULT_TARGETS)
    with pytest.raises(harpoon.NoRouteError):
        harpoon.route(policy, harpoon.RouteRequest("Hi", tier="large"), harpoon.DEFAULT_TARGETS[:1])

    ok, refused = otel.spans()
    assert ok.name == refused.name == "route ComplexityPolicy"
    attributes = dict(ok.attributes or {})
    assert attributes["hostedai.route.target"] == decision.target.name
    assert attributes["hostedai.route.reason"] == decision.reason
    assert attributes["hostedai.route.score"] == decision.scores["complexity"]
    assert (refused.attributes or {})["error.type"] == "hostedai_harpoon.NoRouteError"
    (decisions,) = otel.points("hostedai.route.decisions")
    assert dict(decisions.attributes) == {
        "hostedai.route.target": decision.target.name,
        "hostedai.route.policy": "ComplexityPolicy",
    }


async def test_breaker_transitions_are_counted(otel: Telemetry, clients: Any) -> None:
    emu = Emulator(faults=FaultPlan(rules=[Fault("error", status=500, path="/v1/health")]))
    breaker = harpoon.CircuitBreakerConfig(minimum_calls=2, open_duration=60)
    client = clients(emu, circuit_breaker=breaker, retry=harpoon.RetryPolicy(max_retries=0))
    for _ in range(2):
        with pytest.raises(harpoon.InternalServerError):
            await call(client, "health")
    with pytest.raises(harpoon.CircuitOpenError):
        await call(client, "health")

    (moved,) = otel.points("hostedai.circuit.transitions")
    assert moved.value == 1
    assert dict(moved.attributes) == {
        "hostedai.circuit.name": "127.0.0.1:8080",
        "hostedai.circuit.state.from": "closed",
        "hostedai.circuit.state": "open",
    }
    refused = otel.spans()[-1]
    assert refused.name == "health"
    assert (refused.attributes or {})["error.type"] == "hostedai_harpoon.CircuitOpenError"
    assert children(otel, refused) == []


def test_a_sync_call_interrupted_mid_request_ends_its_spans(otel: Telemetry) -> None:
    def interrupt(request: httpx.Request) -> httpx.Response:
        raise KeyboardInterrupt

    http = httpx.Client(transport=httpx.MockTransport(interrupt))
    client = harpoon.HostedAI(BASE_URL, API_KEY, http_client=http)
    with pytest.raises(KeyboardInterrupt):
        client.list_pools()
    client.close()
    span = otel.span("list_pools")
    (attempt,) = children(otel, span)
    assert (attempt.attributes or {})["error.type"] == (span.attributes or {})["error.type"]
    assert (span.attributes or {})["error.type"] == "cancelled"
