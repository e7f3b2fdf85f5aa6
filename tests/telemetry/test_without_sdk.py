"""Without an SDK nothing is recorded and nothing fails; the SDK is never imported by the
package; an SDK configured later is picked up. Each case runs in a fresh interpreter,
since a global provider can be set only once per process."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap


def run(code: str, **env: str) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
        env={**os.environ, **env},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_importing_the_package_imports_no_opentelemetry_sdk() -> None:
    out = run(
        """
        import sys
        import hostedai_harpoon
        from hostedai_harpoon import _telemetry
        print(sorted(name for name in sys.modules if name.startswith("opentelemetry")))
        """
    )
    assert out == "[]"


def test_with_no_sdk_every_hook_is_a_no_op_and_nothing_fails() -> None:
    out = run(
        """
        import httpx
        from opentelemetry import trace, metrics
        from hostedai_harpoon import _telemetry as t
        from hostedai_harpoon._telemetry import _hooks, _switch

        op = t.Operation("text_completion", "/v1/inference", genai=True)
        call = t.start_call(op, {"model": "m", "prompt": "p"})
        call.attempt_started(0, httpx.Request("POST", "http://h/v1/inference"))
        call.attempt_ended(503)
        call.retrying(0.1, RuntimeError("x"))
        call.failed(RuntimeError("x"))
        lease = t.start_allocation(model="m", gpus=1)
        lease.phase("create").end()
        lease.moved("creating", "released")
        import hostedai_harpoon as harpoon
        decision = harpoon.RouteDecision(harpoon.DEFAULT_TARGETS[0], "why")
        t.start_route(harpoon.CostPolicy()).decided(decision)
        t.failed_over("a", "b", RuntimeError(), t.start_span("s"))
        t.breaker_moved("h", "closed", "open")
        print(call is _hooks.NO_CALL, lease is _hooks.NO_ALLOCATION, _switch.recorder())
        """
    )
    assert out == "True True None"


def test_an_sdk_configured_after_the_first_calls_is_picked_up() -> None:
    out = run(
        """
        import sys
        from hostedai_harpoon import _telemetry as t
        op = t.Operation("get_pool", "/v1/pools/{pool_id}")
        t.start_call(op).succeeded()
        assert "opentelemetry.sdk" not in sys.modules

        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )
        t.start_call(op).succeeded()  # the API imported, still no provider: nothing
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        t.start_call(op).succeeded()
        (span,) = exporter.get_finished_spans()
        print(span.name, span.instrumentation_scope.name, span.instrumentation_scope.schema_url)
        """
    )
    assert out == (
        "get_pool hostedai_harpoon https://opentelemetry.io/schemas/gen-ai-dev/1.42.0-dev"
    )


def test_a_meter_provider_alone_turns_metrics_on() -> None:
    out = run(
        """
        from opentelemetry import metrics
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from hostedai_harpoon import _telemetry as t
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        import hostedai_harpoon as harpoon
        t.start_route(harpoon.CostPolicy()).decided(
            harpoon.RouteDecision(harpoon.DEFAULT_TARGETS[0], "cheapest")
        )
        data = reader.get_metrics_data()
        scope = data.resource_metrics[0].scope_metrics[0]
        print(scope.scope.name, scope.scope.version == __import__("hostedai_harpoon").__version__,
              [metric.name for metric in scope.metrics])
        """
    )
    assert out == "hostedai_harpoon True ['hostedai.route.decisions']"


def test_real_calls_without_an_sdk_record_nothing_and_work() -> None:
    out = run(
        """
        import sys
        import hostedai_harpoon as harpoon
        from hostedai_harpoon.testing import Emulator
        from hostedai_harpoon._telemetry import _switch

        emu = Emulator()
        with harpoon.HostedAI("http://127.0.0.1:8080", "key-0123456789",
                              http_client=emu.http_client()) as client:
            with client.allocate(model="gemma-3-270m") as lease:
                text = lease.infer("Hi", max_tokens=4).text
                chunks = list(lease.stream("Hi", max_tokens=4))
            harpoon.route(harpoon.ComplexityPolicy(), harpoon.RouteRequest("Hi"),
                          harpoon.DEFAULT_TARGETS)
        print(bool(text), bool(chunks), _switch.recorder(),
              [m for m in sys.modules if m.startswith("opentelemetry")])
        """
    )
    assert out == "True True None []"


def test_real_calls_are_traced_once_an_sdk_is_configured_later() -> None:
    out = run(
        """
        import hostedai_harpoon as harpoon
        from hostedai_harpoon.testing import Emulator
        from opentelemetry import trace
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        emu = Emulator()
        client = harpoon.HostedAI("http://127.0.0.1:8080", "key-0123456789",
                                  http_client=emu.http_client())
        client.health()
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        client.health()
        print([span.name for span in exporter.get_finished_spans()])
        """
    )
    assert out == "['GET /v1/health', 'health']"


def test_a_provider_named_in_the_environment_is_picked_up() -> None:
    out = run(
        """
        import hostedai_harpoon as harpoon
        from hostedai_harpoon.testing import Emulator
        from opentelemetry import trace
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
            InMemorySpanExporter,
        )

        exporter = InMemorySpanExporter()
        trace.get_tracer_provider().add_span_processor(SimpleSpanProcessor(exporter))
        client = harpoon.HostedAI("http://127.0.0.1:8080", "key-0123456789",
                                  http_client=Emulator().http_client())
        client.health()
        print([span.name for span in exporter.get_finished_spans()])
        """,
        OTEL_PYTHON_TRACER_PROVIDER="sdk_tracer_provider",
    )
    assert out == "['GET /v1/health', 'health']"


def test_hosted_ai_log_at_import_gives_a_readable_redacted_stderr_log() -> None:
    code = textwrap.dedent(
        """
        import hostedai_harpoon as harpoon
        from hostedai_harpoon.testing import Emulator
        client = harpoon.HostedAI("http://127.0.0.1:8080", "hk-secret-key-0123456789",
                                  http_client=Emulator().http_client())
        client.health()
        import logging
        logging.getLogger("hostedai_harpoon").debug("header was Bearer hk-secret-key-0123456789")
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=50,
        check=False,
        env={**os.environ, "HOSTED_AI_LOG": "debug"},
    )
    assert done.returncode == 0, done.stderr
    assert "DEBUG   hostedai_harpoon: GET /v1/health -> 200 (attempt 1, request_id=" in done.stderr
    assert "header was Bearer ***" in done.stderr
    assert "hk-secret-key-0123456789" not in done.stderr
