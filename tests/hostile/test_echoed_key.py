"""A server that echoes the key back (in its message, its whole body, its headers) gets it
into nothing the package keeps: no error's str, repr, pickle or traceback, no log record at
DEBUG, no line of ``harpoon`` output, no ``AllAttemptsFailedError`` of the Orchestrator."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.cli import main
from tests.dialects import TEAM
from tests.hostile import _echo
from tests.hostile._echo import everything_about

KEY = "sk-echo-5f1c9a7e3b2d4c6e8a0f1b3d"  # short enough to be shown whole where cut at 40
GATEWAY_KEY = "gw-echo-0a1b2c3d4e5f6a7b8c9d"
LOGGERS = ("", "hostedai_harpoon", "httpx", "httpcore")
CASES = [(where, status) for where in _echo.WHERE for status in _echo.STATUSES]


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    with _echo.serve() as url:
        yield url


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def assert_hidden(text: str, *secrets: str) -> None:
    for secret in (KEY, *secrets):
        assert text.count(secret) == 0, text


async def provoke(client: Any, call: str = "list_pools") -> harpoon.HostedAIError:
    try:
        result = getattr(client, call)()
        if isinstance(client, harpoon.AsyncHostedAI):
            await result
    except harpoon.HostedAIError as error:
        return error
    raise AssertionError(f"{call} did not fail")


@pytest.fixture
def on(dialect: str, tmp_path: Path) -> dict[str, Any]:
    """What a client needs to speak ``dialect``."""
    if dialect == "v1":
        return {}
    return {"dialect": "gpuaas", "team_id": TEAM, "ledger_dir": tmp_path}


def make_client(flavor: str, base_url: str, **options: Any) -> Any:
    options = {"api_key": KEY, "max_retries": 0, "circuit_breaker": None, **options}
    if flavor == "sync":
        return harpoon.HostedAI(base_url, **options)
    return harpoon.AsyncHostedAI(base_url, **options)


@pytest.mark.parametrize("flavor", ["sync", "async"])
@pytest.mark.parametrize(("where", "status"), CASES)
async def test_no_error_built_from_an_echoing_answer_holds_the_key(
    server: str,
    on: dict[str, Any],
    flavor: str,
    where: str,
    status: int,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    client = make_client(flavor, f"{server}/{where}/{status}", **on)
    try:
        error = await provoke(client, "health" if status == 200 else "list_pools")
    finally:
        await _close(client)
    expected = harpoon.ResponseValidationError if status == 200 else harpoon.APIStatusError
    assert isinstance(error, expected)
    assert_hidden(everything_about(error))
    assert_hidden(debug_logs.text)
    for record in debug_logs.records:
        assert_hidden(record.getMessage())


@pytest.mark.parametrize("where", _echo.WHERE)
def test_a_credential_in_default_headers_is_kept_as_a_secret(
    server: str, on: dict[str, Any], where: str
) -> None:
    headers = {"X-Api-Key": GATEWAY_KEY, "X-Token": KEY, "X-Team": "team-1"}
    with harpoon.HostedAI(
        f"{server}/{where}/401", api_key=KEY, max_retries=0, default_headers=headers, **on
    ) as client:
        for shown in (repr(client._planner), repr(vars(client)), repr(client._planner.headers)):
            assert_hidden(shown, GATEWAY_KEY)
        assert "team-1" in repr(client._planner.headers)
        with pytest.raises(harpoon.AuthenticationError) as raised:
            client.list_pools()
    assert_hidden(everything_about(raised.value), GATEWAY_KEY)


def test_a_request_seen_by_the_callers_transport_keeps_its_headers(server: str) -> None:
    seen: list[httpx.Request] = []
    http = httpx.Client(event_hooks={"request": [seen.append]})
    client = harpoon.HostedAI(f"{server}/message/401", api_key=KEY, max_retries=0, http_client=http)
    with http, pytest.raises(harpoon.AuthenticationError) as raised:
        client.list_pools()
    assert [request.headers["authorization"] for request in seen] == [f"Bearer {KEY}"]
    assert_hidden(everything_about(raised.value))


@pytest.mark.parametrize(("where", "status"), CASES)
@pytest.mark.parametrize("command", [["health"], ["pools", "--json"], ["allocations", "list"]])
def test_harpoon_shows_no_key_from_an_echoing_server(
    server: str,
    where: str,
    status: int,
    command: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HOSTED_AI_BASE_URL", f"{server}/{where}/{status}")
    monkeypatch.setenv("HOSTED_AI_API_KEY", KEY)
    monkeypatch.delenv("HOSTED_AI_POOL_ID", raising=False)
    assert main(command) == 1
    out, err = capsys.readouterr()
    assert "error" in out + err  # (with --json, a JSON error object on stdout)
    assert_hidden(out + err)


@pytest.mark.parametrize("status", [401, 200])
@pytest.mark.parametrize("where", _echo.WHERE)
@pytest.mark.parametrize(
    "command", [["pools", "--json"], ["allocations", "list"], ["allocations", "reconcile"]]
)
def test_harpoon_on_the_platform_shows_no_key_from_an_echoing_server(
    server: str,
    where: str,
    status: int,
    command: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("HOSTED_AI_BASE_URL", f"{server}/{where}/{status}")
    monkeypatch.setenv("HOSTED_AI_API_KEY", KEY)
    monkeypatch.setenv("HOSTED_AI_DIALECT", "gpuaas")
    monkeypatch.setenv("HOSTED_AI_TEAM_ID", TEAM)
    monkeypatch.setenv("HOSTED_AI_LEDGER_DIR", str(tmp_path))
    assert main(command) == 1
    out, err = capsys.readouterr()
    assert "error" in out + err
    assert_hidden(out + err)


@pytest.mark.parametrize("command", [["health"], ["health", "--json"], ["pools"]])
def test_harpoon_masks_the_key_in_a_valid_answer_that_repeats_it(
    server: str,
    command: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HOSTED_AI_BASE_URL", f"{server}/valid/200")
    monkeypatch.setenv("HOSTED_AI_API_KEY", KEY)
    monkeypatch.delenv("HOSTED_AI_POOL_ID", raising=False)
    assert main(command) == 0
    out, err = capsys.readouterr()
    assert "Bearer ***" in out
    assert_hidden(out + err)


# A 500 makes every target fail (after the create's replay): AllAttemptsFailedError.
@pytest.mark.parametrize(("where", "status"), [("header", 500), ("message", 401)])
def test_harpoon_infer_shows_no_key_from_an_echoing_server(
    server: str,
    where: str,
    status: int,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("HOSTED_AI_BASE_URL", f"{server}/{where}/{status}")
    monkeypatch.setenv("HOSTED_AI_API_KEY", KEY)
    assert main(["infer", "hello", "--timeout", "5"]) == 1
    out, err = capsys.readouterr()
    assert "error" in err
    assert_hidden(out + err)


@pytest.mark.parametrize(("where", "status"), [("message", 500), ("header", 401)])
async def test_the_orchestrator_raises_no_key_from_an_echoing_server(
    server: str,
    on: dict[str, Any],
    where: str,
    status: int,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    client = make_client("async", f"{server}/{where}/{status}", **on)
    async with client, harpoon.Orchestrator(client) as orchestrator:
        with pytest.raises(harpoon.HostedAIError) as raised:
            await orchestrator.process("hello")
    error = raised.value
    shown = everything_about(error)
    if status == 500:
        assert isinstance(error, harpoon.AllAttemptsFailedError)
        shown += repr(error.reasons) + repr(error.attempts)
        shown += "".join(everything_about(a.error) for a in error.attempts if a.error)
    assert_hidden(shown)
    assert_hidden(debug_logs.text)


async def _close(client: Any) -> None:
    if isinstance(client, harpoon.AsyncHostedAI):
        await client.close()
    else:
        client.close()


def test_hosted_ai_log_debug_leaves_httpcore_quiet(server: str) -> None:
    script = (
        "import hostedai_harpoon as harpoon\n"
        f"client = harpoon.HostedAI({server + '/header/401'!r}, api_key={KEY!r}, max_retries=0)\n"
        "try:\n"
        "    client.list_pools()\n"
        "except harpoon.AuthenticationError:\n"
        "    pass\n"
    )
    env = {**os.environ, "HOSTED_AI_LOG": "debug", "PYTHONPATH": os.getcwd()}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert "hostedai_harpoon: GET /v1/pools -> 401" in done.stderr
    assert "httpcore" not in done.stderr
    assert_hidden(done.stdout + done.stderr)


@pytest.mark.parametrize("depth", [900, 990, 5000])
def test_an_error_body_nested_too_deep_to_scrub_is_still_a_typed_error(depth: int) -> None:
    body = b'{"error": ' + b"[" * depth + b"]" * depth + b', "echo": "' + KEY.encode() + b'"}'

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(500, content=body)

    http = httpx.Client(transport=httpx.MockTransport(handler))
    client = harpoon.HostedAI("http://127.0.0.1:9", api_key=KEY, max_retries=0, http_client=http)
    with http, pytest.raises(harpoon.InternalServerError) as raised:
        client.health()
    assert_hidden(everything_about(raised.value))
