"""Every runnable example in ``examples/`` runs as is and says what it did.

Each runs in a subprocess, once against its embedded emulator (no ``HOSTED_AI_*``
variables) and once "against a real endpoint": an emulator served on 127.0.0.1 by this
test, named by ``HOSTED_AI_BASE_URL``, which then shows whether the example left anything
allocated. ``demo.py`` is the exception: it always uses its embedded emulator, as
docs/examples.md says.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from hostedai_harpoon.testing import Emulator

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"
EMBEDDED = "against the embedded emulator (set HOSTED_AI_BASE_URL for a real endpoint)"


def run_example(name: str, env: dict[str, str] | None = None) -> list[str]:
    """The lines ``examples/<name>`` printed; the test fails if it did not exit with 0."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOSTED_AI_")}
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / name)],
        capture_output=True,
        text=True,
        timeout=45,
        env={**clean, **(env or {})},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Traceback" not in done.stderr
    return done.stdout.splitlines()


def check_quickstart(lines: list[str]) -> None:
    routes = [line.split()[0] for line in lines if line.startswith(("gemma", "qwen"))]
    assert routes == ["gemma-3-270m", "gemma-3-270m", "qwen3-30b-a3b"]
    assert sum("why: complexity" in line for line in lines) == 3
    assert any(line.startswith("session spent $") for line in lines)
    assert "4 requests" in "\n".join(lines)


def check_sync_client(lines: list[str]) -> None:
    assert lines[1].startswith("health: ok")
    assert any(line.startswith("pool gpu-pool-1:") for line in lines)
    assert any(line.startswith("infer: '") for line in lines)
    assert any(line.startswith("lease alloc_") for line in lines)
    assert sum(line.endswith(" is now released") for line in lines) == 2


def check_custom_policy(lines: list[str]) -> None:
    text = "\n".join(lines)
    keyword, function = text.split("== prefer_warm (a function)")
    assert "== KeywordPolicy (a class)" in keyword
    assert keyword.count("-> qwen3-30b-a3b") == 2  # the Python and the SQL prompt
    assert keyword.count("-> gemma-3-270m") == 2
    assert "why: mentions python, function: large tier" in keyword
    # The function keeps to the target it has warm once it has one.
    assert function.count("-> gemma-3-270m") == 4
    assert function.count("1 warm, 0 in flight") == 3


def check_streaming(lines: list[str]) -> None:
    headings = [line for line in lines if line.startswith("== ")]
    assert headings == [
        "== client.stream() on an allocation made by hand",
        "== lease.stream() inside client.allocate()",
        "== session.stream() in an Orchestrator session",
    ]
    usage = [line.strip() for line in lines if line.strip().endswith("tokens out)")]
    assert usage == ["(12 tokens out)", "(12 tokens out)", "(16 tokens out)"]
    assert any(line.startswith("  routed to qwen3-30b-a3b: complexity") for line in lines)


def check_prometheus_metrics(lines: list[str]) -> None:
    scrape = "\n".join(lines)
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
    assert "demo-key" not in scrape
    assert "alloc_" not in scrape  # no allocation ids in metric attributes
    assert lines[-1] == "scraped once from a server on 127.0.0.1, now stopped"


def check_two_replicas(lines: list[str]) -> None:
    assert lines[1] == "started a Redis for this run on 127.0.0.1"
    assert lines[2].startswith("replica A: gemma-3-270m answered")
    assert lines[3].startswith("replica B: gemma-3-270m answered")
    assert "replica A's state: redis (fleet 'example', 2 replicas)" in lines
    assert "most allocations of gemma-3-270m at once, fleet-wide: 1 (max_allocations 1)" in lines
    assert lines[-1] == "both replicas left the fleet"


CHECKS: dict[str, Callable[[list[str]], None]] = {
    "quickstart.py": check_quickstart,
    "sync_client.py": check_sync_client,
    "custom_policy.py": check_custom_policy,
    "streaming.py": check_streaming,
    "prometheus_metrics.py": check_prometheus_metrics,
    "two_replicas.py": check_two_replicas,
}


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_the_example_runs_against_the_embedded_emulator(name: str) -> None:
    lines = run_example(name)
    assert lines[0] == EMBEDDED
    CHECKS[name](lines)
    assert lines[-1 if name == "streaming.py" else -2] == "allocations left on the emulator: 0"


@pytest.mark.parametrize("name", sorted(CHECKS))
def test_the_example_runs_against_the_endpoint_in_hosted_ai_base_url(name: str) -> None:
    emulator = Emulator()
    with emulator.serve() as base_url:
        lines = run_example(name, {"HOSTED_AI_BASE_URL": base_url, "HOSTED_AI_API_KEY": "k"})
        assert lines[0] == f"against {base_url} (from HOSTED_AI_BASE_URL)"
        CHECKS[name](lines)
        assert not any("left on the emulator" in line for line in lines)
        assert emulator.live_allocations() == []
        assert emulator.requests_to("POST", "/v1/allocate")


def test_the_readme_demo_runs_and_leaves_nothing_behind() -> None:
    lines = run_example("demo.py")
    assert lines[-1] == "Done. Allocations left on the emulator: 0, orphans: 0"


def test_the_readme_demo_keeps_to_its_embedded_emulator_whatever_the_environment() -> None:
    emulator = Emulator()
    with emulator.serve() as base_url:
        lines = run_example("demo.py", {"HOSTED_AI_BASE_URL": base_url, "HOSTED_AI_API_KEY": "k"})
    assert lines[0].endswith(": the Orchestrator on the embedded emulator")
    assert lines[-1] == "Done. Allocations left on the emulator: 0, orphans: 0"
    assert not emulator.exchanges


def test_every_example_script_is_run_by_a_test() -> None:
    covered = {*CHECKS, "demo.py", "testing_your_app.py", "test_testing_your_app.py"}
    covered.add("vllm_endpoints.py")
    assert {path.name for path in EXAMPLES.glob("*.py")} == covered


def check_vllm_endpoints(lines: list[str]) -> None:
    routes = [line.split(":")[0] for line in lines[1:4]]
    assert routes == ["small-vllm", "large-vllm", "small-vllm"]
    assert "20 calls at once: 20 answered" in lines
    assert any(line.startswith("streamed from small-vllm: '") for line in lines)
    assert any(line.startswith("small-vllm: 23 requests, 0 errors") for line in lines)


def test_the_vllm_endpoints_example_runs_against_its_emulated_servers() -> None:
    lines = run_example("vllm_endpoints.py")
    assert lines[0].startswith("against two emulated vLLM servers")
    check_vllm_endpoints(lines)


def test_the_vllm_endpoints_example_runs_against_the_servers_in_vllm_urls() -> None:
    emulator = Emulator(api_keys=["sk-vllm-example"])
    with emulator.serve_openai() as a, emulator.serve_openai() as b:
        env = {"VLLM_URLS": f"{a},{b}", "VLLM_API_KEY": "sk-vllm-example"}
        lines = run_example("vllm_endpoints.py", env)
    assert lines[0] == f"against {a},{b} (from VLLM_URLS)"
    check_vllm_endpoints(lines)
    assert len(emulator.requests_to("POST", "/v1/chat/completions")) == 24
    assert emulator.live_allocations() == []  # nothing allocated: servers that run
