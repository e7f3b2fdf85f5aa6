"""examples/prometheus_metrics.py runs, serves on 127.0.0.1, and its scrape shows the SDK's
metrics under their Prometheus names (in a fresh interpreter: it sets the global provider)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "prometheus_metrics.py"


def test_the_example_prints_one_scrape_with_the_sdks_metrics() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLE)], capture_output=True, text=True, timeout=50, check=False
    )
    assert done.returncode == 0, done.stderr
    scrape = done.stdout
    for family in (
        "gen_ai_client_operation_duration_seconds",
        "gen_ai_client_token_usage",
        "gen_ai_client_operation_time_to_first_chunk_seconds",
        "http_client_request_duration_seconds",
        "hostedai_allocation_active",
        "hostedai_allocation_duration_seconds",
        "hostedai_allocation_wait_seconds",
        "hostedai_allocation_gpu_seconds_total",
        "hostedai_allocation_cost_total",
        "hostedai_route_decisions_total",
    ):
        assert f"\n{family}" in scrape, family
    assert 'hostedai_route_decisions_total{hostedai_route_policy="ComplexityPolicy"' in scrape
    assert 'otel_scope_name="hostedai_harpoon"' in scrape
    assert "_bucket{" not in scrape
    assert "example-key-0123456789" not in scrape
    assert "alloc_" not in scrape  # no allocation ids in metric attributes
