"""The SDK's metrics in Prometheus: the OpenTelemetry SDK with its Prometheus exporter.

Run it with ``python examples/prometheus_metrics.py`` (needs ``hostedai-harpoon[otel]``).
It serves the metrics on 127.0.0.1 (a free port), makes a few orchestrated calls and a
leased one against the emulator that ships with the package (in-process, no credentials),
scrapes the endpoint once and prints what Prometheus reads, histogram buckets left out.
"""

from __future__ import annotations

import asyncio
from wsgiref.simple_server import WSGIServer

import httpx
from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, start_http_server

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator

BASE_URL = "http://127.0.0.1:8080"  # any URL: the emulator answers in-process
API_KEY = "example-key-0123456789"
PROMPTS = [
    "Hi there!",
    "Name three uses of a GPU.",
    "Prove step by step that the square root of 2 is irrational, then explain why the "
    "proof fails for the square root of 4. Show every step and justify each inference.",
]


def serve_metrics() -> tuple[str, WSGIServer]:
    """Export the global meter provider's metrics to Prometheus; the scrape URL and the
    server (to shut down)."""
    registry = CollectorRegistry()
    reader = PrometheusMetricReader(registry=registry)
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
    server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    return f"http://127.0.0.1:{server.server_port}/metrics", server


async def orchestrated_calls(emulator: Emulator) -> None:
    """Each prompt routed to the small or the large model, leased, run and released."""
    http = emulator.async_http_client()
    async with (
        harpoon.AsyncHostedAI(BASE_URL, API_KEY, http_client=http) as client,
        harpoon.Orchestrator(client) as orchestrator,
    ):
        for prompt in PROMPTS:
            await orchestrator.process(prompt, max_tokens=16)


def leased_calls(emulator: Emulator) -> None:
    """A lease of the sync client, with an inference and a stream on it."""
    http = emulator.http_client()
    with (
        harpoon.HostedAI(BASE_URL, API_KEY, http_client=http) as client,
        client.allocate(model="gemma-3-270m") as lease,
    ):
        lease.infer("Count to five.", max_tokens=16)
        with lease.stream("Tell me a short story.", max_tokens=16) as chunks:
            for _ in chunks:
                pass


def main() -> None:
    url, server = serve_metrics()
    try:
        emulator = Emulator()
        asyncio.run(orchestrated_calls(emulator))
        leased_calls(emulator)
        scrape = httpx.get(url).text
    finally:
        server.shutdown()
        server.server_close()
    for line in scrape.splitlines():
        if "_bucket{" not in line:
            print(line)


if __name__ == "__main__":
    main()
