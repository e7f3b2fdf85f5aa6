"""The orchestrator's telemetry: its call span holds the route decision, the allocation and
the inference; a failover is an event and a count; leases of priced targets feed the cost."""

from __future__ import annotations

import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, Fault, FaultPlan, PoolSpec
from tests.client._support import API_KEY, BASE_URL
from tests.telemetry.conftest import Telemetry

SMALL = harpoon.Target("gemma-3-270m", tier="small", pool="small-pool", cost_per_gpu_hour=0.4)
LARGE = harpoon.Target("qwen3-30b-a3b", tier="large", pool="large-pool", cost_per_gpu_hour=2.5)
POOLS = [
    PoolSpec("small-pool", gpus=4, models=("gemma-3-270m",)),
    PoolSpec("large-pool", gpus=4, models=("qwen3-30b-a3b",)),
]
COMPLEX = (
    "Prove step by step that the square root of 2 is irrational, then explain why the "
    "proof fails for 4. Justify each inference rigorously."
)
FAST = harpoon.RetryPolicy(max_retries=0)


def parent_of(otel: Telemetry, name: str) -> str:
    span = otel.span(name)
    assert span.parent is not None
    (parent,) = [s for s in otel.spans() if s.context.span_id == span.parent.span_id]
    return parent.name


async def test_an_orchestrated_call_nests_route_allocation_and_inference(
    otel: Telemetry,
) -> None:
    emu = Emulator(pools=POOLS)
    async with emu.async_http_client() as http:
        client = harpoon.AsyncHostedAI(BASE_URL, API_KEY, http_client=http, retry=FAST)
        async with harpoon.Orchestrator(client, targets=[SMALL, LARGE]) as orchestrator:
            routed = await orchestrator.process("Hi!")
        await client.close()

    call = otel.span("orchestrator.infer")
    attributes = dict(call.attributes or {})
    assert attributes["hostedai.route.policy"] == "ComplexityPolicy"
    assert attributes["hostedai.route.target"] == routed.target.name == "gemma-3-270m"
    assert attributes["hostedai.orchestrator.attempts"] == 1
    assert parent_of(otel, "route ComplexityPolicy") == "orchestrator.infer"
    assert parent_of(otel, "allocation gemma-3-270m") == "orchestrator.infer"
    assert parent_of(otel, "text_completion gemma-3-270m") == "orchestrator.infer"
    assert parent_of(otel, "allocation.create") == "allocation gemma-3-270m"
    (cost,) = otel.points("hostedai.allocation.cost")
    (gpu_seconds,) = otel.points("hostedai.allocation.gpu_seconds")
    assert cost.value == pytest.approx(gpu_seconds.value * 0.4 / 3600)
    (decisions,) = otel.points("hostedai.route.decisions")
    assert dict(decisions.attributes) == {
        "hostedai.route.target": "gemma-3-270m",
        "hostedai.route.policy": "ComplexityPolicy",
    }


async def test_a_failover_is_an_event_on_the_call_and_a_count(otel: Telemetry) -> None:
    fails = FaultPlan(
        rules=[Fault("error", status=500, method="POST", path="/v1/inference", times=1)]
    )
    emu = Emulator(pools=POOLS, faults=fails)
    async with emu.async_http_client() as http:
        client = harpoon.AsyncHostedAI(BASE_URL, API_KEY, http_client=http, retry=FAST)
        async with harpoon.Orchestrator(client, targets=[SMALL, LARGE]) as orchestrator:
            routed = await orchestrator.process(COMPLEX)
        await client.close()

    assert [a.target.name for a in routed.attempts] == ["qwen3-30b-a3b", "gemma-3-270m"]
    call = otel.span("orchestrator.infer")
    assert (call.attributes or {})["hostedai.route.target"] == "gemma-3-270m"
    assert (call.attributes or {})["hostedai.orchestrator.attempts"] == 2
    (event,) = [e for e in call.events if e.name == "hostedai.failover"]
    assert event.attributes == {
        "hostedai.failover.from": "qwen3-30b-a3b",
        "hostedai.route.target": "gemma-3-270m",
        "error.type": "hostedai_harpoon.InternalServerError",
    }
    (failovers,) = otel.points("hostedai.failovers")
    assert failovers.value == 1
    assert dict(failovers.attributes) == dict(event.attributes or {})
    failed = otel.span("text_completion qwen3-30b-a3b")
    assert (failed.attributes or {})["error.type"] == "hostedai_harpoon.InternalServerError"


async def test_every_attempt_failing_fails_the_call_span(otel: Telemetry) -> None:
    fails = FaultPlan(rules=[Fault("error", status=500, method="POST", path="/v1/inference")])
    emu = Emulator(pools=POOLS, faults=fails)
    async with emu.async_http_client() as http:
        client = harpoon.AsyncHostedAI(BASE_URL, API_KEY, http_client=http, retry=FAST)
        async with harpoon.Orchestrator(client, targets=[SMALL, LARGE]) as orchestrator:
            with pytest.raises(harpoon.AllAttemptsFailedError):
                await orchestrator.process(COMPLEX)
        await client.close()
    call = otel.span("orchestrator.infer")
    assert (call.attributes or {})["error.type"] == "hostedai_harpoon.AllAttemptsFailedError"


async def test_a_session_stream_is_an_orchestrator_call_with_a_streamed_inference(
    otel: Telemetry,
) -> None:
    emu = Emulator(pools=POOLS)
    async with emu.async_http_client() as http:
        client = harpoon.AsyncHostedAI(BASE_URL, API_KEY, http_client=http, retry=FAST)
        orchestrator = harpoon.Orchestrator(client, targets=[SMALL, LARGE])
        async with (
            orchestrator,
            orchestrator.allocate() as session,
            session.stream("Hi!") as chunks,
        ):
            texts = [chunk.delta async for chunk in chunks]
        await client.close()

    assert texts
    call = otel.span("orchestrator.stream")
    assert (call.attributes or {})["hostedai.route.target"] == "gemma-3-270m"
    assert parent_of(otel, "text_completion gemma-3-270m") == "orchestrator.stream"
    streamed = otel.span("text_completion gemma-3-270m")
    assert (streamed.attributes or {})["gen_ai.request.stream"] is True
    assert (streamed.attributes or {})["gen_ai.response.finish_reasons"]
