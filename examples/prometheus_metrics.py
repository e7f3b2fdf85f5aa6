"""The SDK's metrics in Prometheus: the OpenTelemetry SDK with its Prometheus exporter.

Run it with ``python examples/prometheus_metrics.py`` (needs ``hostedai-harpoon[otel]``).
It serves the metrics on 127.0.0.1 (a free port), makes a few leased calls against the
emulator that ships with the package (in-process, no credentials), scrapes the endpoint
once and prints what Prometheus would read.
"""

from __future__ import annotations

from wsgiref.simple_server import WSGIServer

import httpx
from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, start_http_server

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator

BASE_URL = "http://127.0.0.1:8080"  # any URL: the emulator answers in-process
PROMPTS = ["Hi there!", "Name three uses of a GPU.", "Count to five."]


def serve_metrics() -> tuple[str, WSGIServer]:
    """Configure the global meter provider to export to Prometheus; the scrape URL and
    the server (to shut down)."""
    registry = CollectorRegistry()
    metrics.set_meter_provider(
        MeterProvider(metric_readers=[PrometheusMetricReader(registry=registry)])
    )
    server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    return f"http://127.0.0.1:{server.server_port}/metrics", server


def make_calls(emulator: Emulator) -> None:
    """A lease with a few inferences and a stream, then a plain call."""
    with harpoon.HostedAI(
        BASE_URL, "example-key-0123456789", http_client=emulator.http_client()
    ) as client:
        with client.allocate(model="gemma-3-270m") as lease:
            for prompt in PROMPTS:
                lease.infer(prompt, max_tokens=16)
            with lease.stream("Tell me a short story.", max_tokens=16) as chunks:
                for _ in chunks:
                    pass
        client.list_pools()


def main() -> None:
    url, server = serve_metrics()
    try:
        make_calls(Emulator())
        print(httpx.get(url).text)
    finally:
        server.shutdown()
        server.server_close()


if __name__ == "__main__":
    main()
