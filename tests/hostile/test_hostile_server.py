"""Both clients against a raw hostile server on 127.0.0.1: huge, compressed, endless and
dribbled bodies, dribbled headers, a 200 MB event-stream line, keepalive-only streams.

Each case runs in a fresh child process (``_child.py``) so that one case's memory cannot
hide or inflate another's; the child reports the error, the seconds the call took and the
growth of its peak resident set. Every case must end with the right typed error, with the
peak grown by less than ``MAX_GROWTH_MIB``, and the deadline cases within ``DEADLINE_SLACK``
seconds of the deadline.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.dialects import TEAM
from tests.hostile import _server

CHILD = Path(__file__).with_name("_child.py")
MAX_GROWTH_MIB = 64
DEADLINE = 2
DEADLINE_SLACK = 1.0  # a deadline of 2 s must end the call within 3 s
READ_TIMEOUT = 1


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    _server.gzip_bomb()  # build it before any case is timed
    with _server.serve() as url:
        yield url


@pytest.fixture
def on(dialect: str, tmp_path: Path) -> dict[str, Any]:
    """What the child needs to speak ``dialect`` (on ``gpuaas``, ``health`` lists the pools)."""
    if dialect == "v1":
        return {}
    return {"dialect": "gpuaas", "team_id": TEAM, "ledger_dir": str(tmp_path)}


def run_case(server: str, flavor: str, route: str, **case: Any) -> dict[str, Any]:
    return run_child({"flavor": flavor, "base_url": f"{server}/{route}", "call": "health", **case})


def run_child(case: dict[str, Any]) -> dict[str, Any]:
    """What ``_child.py`` reports of ``case``."""
    done = subprocess.run(
        [sys.executable, str(CHILD), json.dumps(case)],
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, Any] = json.loads(done.stdout)
    return result


@pytest.mark.parametrize("flavor", ["sync", "async"])
@pytest.mark.parametrize(
    ("route", "call", "said"),
    [
        ("huge", "health", "the body is larger than"),
        ("bomb", "health", "the body is larger than"),
        ("endless", "health", "the body is larger than"),
        ("sse-line", "stream", "an event of the stream is larger than"),
    ],
)
def test_an_oversized_body_stops_at_the_limit_without_holding_it(
    server: str, on: dict[str, Any], flavor: str, route: str, call: str, said: str
) -> None:
    if on and call == "stream":
        pytest.skip("a stream by allocation id is v1's: test_platform.py streams from a pod")
    result = run_case(server, flavor, route, call=call, **on)
    assert result["error"] == "ResponseValidationError", result
    assert said in result["message"]
    assert result["growth_mib"] < MAX_GROWTH_MIB, result


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_the_deadline_bounds_reading_a_dribbled_body(
    server: str, on: dict[str, Any], flavor: str
) -> None:
    result = run_case(server, flavor, "dribble-body", deadline=DEADLINE, **on)
    assert result["error"] == "APITimeoutError", result
    assert f"deadline of {DEADLINE}s" in result["message"]
    assert "after 1 attempt(s)" in result["message"]
    assert result["seconds"] < DEADLINE + DEADLINE_SLACK, result


@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_the_deadline_bounds_dribbled_headers(server: str, on: dict[str, Any], flavor: str) -> None:
    result = run_case(server, flavor, "dribble-headers", deadline=DEADLINE, **on)
    assert result["error"] == "APITimeoutError", result
    assert f"deadline of {DEADLINE}s" in result["message"]
    assert result["seconds"] < DEADLINE + DEADLINE_SLACK, result


@pytest.mark.v1_only("a stream by allocation id: test_platform.py streams from a pod")
@pytest.mark.parametrize("flavor", ["sync", "async"])
def test_a_stream_of_keepalive_comments_ends_after_the_read_timeout(
    server: str, dialect: str, flavor: str
) -> None:
    result = run_case(server, flavor, "sse-keepalive", call="stream", read_timeout=READ_TIMEOUT)
    assert result["error"] == "APITimeoutError", result
    assert "no event" in result["message"]
    # Comments arrive every 0.2 s, so no single read times out: only the idle limit ends it.
    assert result["seconds"] < READ_TIMEOUT + 2, result
    assert "APIConnectionError" in result["classes"]
