"""The SDK's metrics in Prometheus: the OpenTelemetry SDK with its Prometheus exporter.

Run ``python examples/prometheus_metrics.py`` (needs ``hostedai-harpoon[otel]``). Against
the embedded emulator by default (no credentials, no network); against a real HostedAI
endpoint when ``HOSTED_AI_BASE_URL`` and ``HOSTED_AI_API_KEY`` are set.

It serves the metrics on 127.0.0.1 (a free port), makes a few orchestrated calls and a
leased one, scrapes the endpoint once and prints what Prometheus reads (histogram buckets
left out). The SDK only ever uses the OpenTelemetry API: the application (here, this
script) chooses the SDK and the exporter, as docs/observability.md describes.
"""

from __future__ import annotations

import asyncio
import os
from wsgiref.simple_server import WSGIServer

import httpx
from opentelemetry import metrics
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import CollectorRegistry, start_http_server

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator

BASE_URL = "http://127.0.0.1:8080"  # for the embedded emulator: it answers in-process
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


def pick_endpoint() -> Emulator | None:
    """The embedded emulator, unless a real endpoint is configured."""
    if os.environ.get("HOSTED_AI_BASE_URL"):
        print(f"against {os.environ['HOSTED_AI_BASE_URL']} (from HOSTED_AI_BASE_URL)")
        return None
    print("against the embedded emulator (set HOSTED_AI_BASE_URL for a real endpoint)")
    return Emulator()


async def orchestrated_calls(emulator: Emulator | None) -> None:
    """Each prompt routed to the small or the large model, leased, run and released."""
    if emulator is None:
        client = harpoon.AsyncHostedAI()
    else:
        http = emulator.async_http_client()
        client = harpoon.AsyncHostedAI(BASE_URL, "demo-key", http_client=http)
    async with client, harpoon.Orchestrator(client) as orchestrator:
        for prompt in PROMPTS:
            await orchestrator.process(prompt, max_tokens=16)


def leased_calls(emulator: Emulator | None) -> None:
    """A lease of the sync client, with an inference and a stream on it."""
    if emulator is None:
        client = harpoon.HostedAI()
    else:
        client = harpoon.HostedAI(BASE_URL, "demo-key", http_client=emulator.http_client())
    with client, client.allocate(model="gemma-3-270m") as lease:
        lease.infer("Count to five.", max_tokens=16)
        with lease.stream("Tell me a short story.", max_tokens=16) as chunks:
            for _ in chunks:
                pass


def main() -> None:
    emulator = pick_endpoint()
    url, server = serve_metrics()
    try:
        asyncio.run(orchestrated_calls(emulator))
        leased_calls(emulator)
        scrape = httpx.get(url).text
    finally:
        server.shutdown()
        server.server_close()
    for line in scrape.splitlines():
        if "_bucket{" not in line:
            print(line)
    if emulator is not None:
        print(f"allocations left on the emulator: {len(emulator.live_allocations())}")
    print("scraped once from a server on 127.0.0.1, now stopped")


if __name__ == "__main__":
    main()
