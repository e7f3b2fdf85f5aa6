"""The ``harpoon`` command against an emulator served on 127.0.0.1.

Most tests call ``main([...])`` in-process with the plugin's ``hostedai_env`` (the served
emulator in ``HOSTED_AI_*``); the last ones run the installed script in a subprocess.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon._benchmarks import TABLE_END, TABLE_START
from hostedai_harpoon.cli import main
from hostedai_harpoon.testing import Emulator, Fault
from hostedai_harpoon.testing._serve import serve_in_thread

ROOT = Path(__file__).resolve().parent.parent.parent
HARPOON = Path(sys.executable).parent / "harpoon"
ENV_NAMES = ("HOSTED_AI_BASE_URL", "HOSTED_AI_API_KEY", "HOSTED_AI_POOL_ID")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``harpoon argv``: its exit status, stdout and stderr."""
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def allocate(emulator: Emulator, model: str = "gemma-3-270m", gpus: int = 1) -> str:
    with emulator.http_client(headers={"Authorization": "Bearer k"}) as http:
        response = http.post("/v1/allocate", json={"model": model, "gpu_count": gpus})
        response.raise_for_status()
        return str(response.json()["id"])


def assert_one_error_line(err: str, starts: str) -> None:
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith(starts), err
    assert "Traceback" not in err


@pytest.fixture
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


# health, pools ---------------------------------------------------------------------------


def test_health_prints_the_status_and_version(
    capsys: pytest.CaptureFixture[str], hostedai_env: str
) -> None:
    status, out, err = run(capsys, "health")
    assert (status, err) == (0, "")
    assert out == f"ok (version {harpoon.__version__}+emulator), key accepted\n"
    status, out, _ = run(capsys, "health", "--json")
    assert json.loads(out) == {
        "status": "ok",
        "version": f"{harpoon.__version__}+emulator",
        "key": "accepted",
        "key_error": None,
    }


@pytest.mark.hostedai_emulator(api_keys=["the-right-key"])
def test_health_exits_1_when_the_key_is_refused(
    capsys: pytest.CaptureFixture[str], hostedai_env: str, hostedai_emulator: Emulator
) -> None:
    # The health check itself takes no key: without the second call this would exit 0.
    status, out, err = run(capsys, "health")
    assert (status, err) == (1, "")
    assert out.startswith(f"ok (version {harpoon.__version__}+emulator), key refused (401 ")
    assert "test-key" not in out
    assert hostedai_emulator.requests_to("GET", "/v1/pools")

    status, out, _ = run(capsys, "health", "--json")
    assert status == 1
    health = json.loads(out)
    assert (health["status"], health["key"]) == ("ok", "refused")
    assert health["key_error"].startswith("401 invalid_api_key")


def test_health_reports_a_403_as_a_refused_key(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        body: dict[str, object] = {"status": "ok", "version": "9"}
        status = 200
        if scope["path"] != "/v1/health":
            body = {"error": {"code": "forbidden", "message": "This key may not list pools."}}
            status = 403
        headers = [(b"content-type", b"application/json"), (b"x-request-id", b"req_1")]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": json.dumps(body).encode()})

    monkeypatch.setenv("HOSTED_AI_API_KEY", "k")
    with serve_in_thread(app, "127.0.0.1", 0) as url:
        status, out, _ = run(capsys, "health", "--base-url", url)
    assert status == 1
    assert out.startswith("ok (version 9), key refused (403 ")


def test_health_exits_1_when_the_service_is_degraded(
    capsys: pytest.CaptureFixture[str], hostedai_env: str, hostedai_emulator: Emulator
) -> None:
    hostedai_emulator.set_health("degraded")
    status, out, _ = run(capsys, "health")
    assert status == 1
    assert out.startswith("degraded (version ")
    assert out.endswith(", key accepted\n")


@pytest.mark.hostedai_emulator(pools={"small": 2, "big": 16})
def test_pools_lists_each_pool_with_its_free_gpus(
    capsys: pytest.CaptureFixture[str], hostedai_env: str, hostedai_emulator: Emulator
) -> None:
    allocation_id = allocate(hostedai_emulator, gpus=2)
    status, out, _ = run(capsys, "pools")
    assert status == 0
    header, small, big = out.splitlines()
    assert header.split() == ["POOL", "GPU", "TYPE", "FREE", "TOTAL", "MODELS", "DEFAULT"]
    assert small.split()[:4] == ["small", "nvidia-h100-80gb", "0", "2"]
    assert small.endswith("yes")
    assert big.split()[:4] == ["big", "nvidia-h100-80gb", "16", "16"]
    assert not big.endswith("yes")

    status, out, _ = run(capsys, "pools", "--json")
    pools = json.loads(out)
    assert [(p["id"], p["gpus_free"], p["default"]) for p in pools] == [
        ("small", 0, True),
        ("big", 16, False),
    ]
    assert pools[0]["models"] == ["gemma-3-270m", "qwen3-30b-a3b"]
    hostedai_emulator.expire_allocation(allocation_id)


@pytest.mark.hostedai_emulator(pools={"small": 2, "big": 16})
def test_pools_with_pool_shows_that_pool_only(
    capsys: pytest.CaptureFixture[str], hostedai_env: str
) -> None:
    status, out, _ = run(capsys, "pools", "--pool", "big")
    assert status == 0
    _, big = out.splitlines()
    assert big.split()[:4] == ["big", "nvidia-h100-80gb", "16", "16"]
    status, out, _ = run(capsys, "pools", "--pool", "small", "--json")
    assert [pool["id"] for pool in json.loads(out)] == ["small"]


@pytest.mark.hostedai_emulator(pools={"small": 2, "big": 16})
@pytest.mark.parametrize(
    "argv",
    [
        ["pools", "--pool", "nope"],
        ["allocations", "list", "--pool", "nope"],
        ["allocations", "release", "--all", "--pool", "nope"],
    ],
)
def test_an_unknown_pool_is_an_error(
    capsys: pytest.CaptureFixture[str],
    hostedai_env: str,
    hostedai_emulator: Emulator,
    argv: list[str],
) -> None:
    held = allocate(hostedai_emulator)
    status, out, err = run(capsys, *argv)
    assert (status, out) == (1, "")
    prog = " ".join(["harpoon", *(arg for arg in argv[:-2] if not arg.startswith("--"))])
    assert_one_error_line(
        err,
        f"{prog}: error: there is no pool 'nope' (from --pool); the pools are: small, big",
    )
    assert [a.id for a in hostedai_emulator.live_allocations()] == [held]
    hostedai_emulator.reset()


# Every command that calls the API, and its name in an error line.
API_COMMANDS = [
    (["health"], "harpoon health"),
    (["pools"], "harpoon pools"),
    (["allocations", "list"], "harpoon allocations list"),
    (["allocations", "release", "--all"], "harpoon allocations release"),
    (["allocations", "release", "alloc_1"], "harpoon allocations release"),
    (["infer", "Hi"], "harpoon infer"),
    (["infer", "Hi", "--stream"], "harpoon infer"),
]


@pytest.mark.parametrize(("argv", "prog"), API_COMMANDS)
def test_every_command_reports_an_unknown_pool_in_the_environment_alike(
    capsys: pytest.CaptureFixture[str],
    hostedai_env: str,
    hostedai_emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    prog: str,
) -> None:
    held = allocate(hostedai_emulator)
    monkeypatch.setenv("HOSTED_AI_POOL_ID", "nope")
    status, out, err = run(capsys, *argv)
    assert (status, out) == (1, "")
    assert_one_error_line(
        err,
        f"{prog}: error: there is no pool 'nope' (from HOSTED_AI_POOL_ID); "
        "the pools are: gpu-pool-1",
    )
    status, out, err = run(capsys, *argv, "--json")
    assert (status, err) == (1, "")
    assert json.loads(out) == {
        "error": {
            "type": "NotFoundError",
            "message": "there is no pool 'nope' (from HOSTED_AI_POOL_ID); the pools are: "
            "gpu-pool-1",
            "exit_code": 1,
        }
    }
    # Nothing was done in the default pool instead.
    assert [a.id for a in hostedai_emulator.live_allocations()] == [held]
    assert hostedai_emulator.requests_to("POST", "/v1/inference") == []
    hostedai_emulator.reset()


@pytest.mark.parametrize(("argv", "prog"), API_COMMANDS)
@pytest.mark.parametrize(
    ("pool", "message"),
    [
        ("..", "HOSTED_AI_POOL_ID must not be '..'"),
        ("\udcff", "HOSTED_AI_POOL_ID holds characters that cannot be sent"),
    ],
)
def test_every_command_reports_a_malformed_pool_in_the_environment_alike(
    capsys: pytest.CaptureFixture[str],
    hostedai_env: str,
    hostedai_emulator: Emulator,
    monkeypatch: pytest.MonkeyPatch,
    argv: list[str],
    prog: str,
    pool: str,
    message: str,
) -> None:
    monkeypatch.setenv("HOSTED_AI_POOL_ID", pool)
    status, out, err = run(capsys, *argv)
    assert (status, out) == (2, "")
    assert_one_error_line(err, f"{prog}: error: {message}")
    assert hostedai_emulator.requests_to("GET") == []  # refused before any call


def test_infer_names_an_unknown_pool_given_with_pool(
    capsys: pytest.CaptureFixture[str], hostedai_env: str, hostedai_emulator: Emulator
) -> None:
    status, out, err = run(capsys, "infer", "Hi", "--pool", "nope")
    assert (status, out) == (1, "")
    assert_one_error_line(err, "harpoon infer: error: there is no pool 'nope' (from --pool)")
    assert hostedai_emulator.allocations() == []


# allocations list ------------------------------------------------------------------------


def test_allocations_list_shows_what_holds_gpus(
    capsys: pytest.CaptureFixture[str], hostedai_env: str, hostedai_emulator: Emulator
) -> None:
    assert run(capsys, "allocations", "list") == (
        0,
        "no allocations hold GPUs in pool gpu-pool-1\n",
        "",
    )
    assert run(capsys, "allocations", "list", "--json")[1] == "[]\n"
    first = allocate(hostedai_emulator, "gemma-3-270m")
    second = allocate(hostedai_emulator, "qwen3-30b-a3b", gpus=2)
    gone = allocate(hostedai_emulator)
    hostedai_emulator.expire_allocation(gone)

    status, out, _ = run(capsys, "allocations", "list")
    assert status == 0
    header, *rows = out.splitlines()
    assert header.split() == ["ID", "POOL", "MODEL", "GPUS", "STATUS", "CREATED", "EXPIRES"]
    assert [row.split()[:5] for row in rows] == [
        [first, "gpu-pool-1", "gemma-3-270m", "1", "ready"],
        [second, "gpu-pool-1", "qwen3-30b-a3b", "2", "ready"],
    ]

    status, out, _ = run(capsys, "allocations", "list", "--json")
    listed = json.loads(out)
    assert [(a["id"], a["gpu_count"], a["status"]) for a in listed] == [
        (first, 1, "ready"),
        (second, 2, "ready"),
    ]
    assert listed[0]["ttl_seconds"] == 600
    assert listed[0]["expires_at"].endswith("+00:00")
    hostedai_emulator.reset()


def test_allocations_list_is_scoped_by_the_pool(
    capsys: pytest.CaptureFixture[str], hostedai_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    emulator = Emulator(pools={"a": 4, "b": 4})
    with serve_in_thread(emulator.asgi_app, "127.0.0.1", 0) as url:
        in_a = allocate(emulator)
        with emulator.http_client(headers={"Authorization": "Bearer k"}) as http:
            in_b = http.post("/v1/allocate", json={"model": "gemma-3-270m", "pool_id": "b"})
        monkeypatch.delenv("HOSTED_AI_POOL_ID")
        _, out, _ = run(capsys, "allocations", "list", "--json", "--base-url", url)
        assert [a["id"] for a in json.loads(out)] == [in_a, in_b.json()["id"]]
        _, out, _ = run(capsys, "allocations", "list", "--json", "--base-url", url, "--pool", "b")
        assert [a["id"] for a in json.loads(out)] == [in_b.json()["id"]]
        monkeypatch.setenv("HOSTED_AI_POOL_ID", "a")
        _, out, _ = run(capsys, "allocations", "list", "--json", "--base-url", url)
        assert [a["id"] for a in json.loads(out)] == [in_a]


def _allocation(allocation_id: str, status: str) -> dict[str, Any]:
    return {
        "id": allocation_id,
        "pool_id": "gpu-pool-1",
        "model": "gemma-3-270m",
        "gpu_count": 1,
        "gpu_type": None,
        "status": status,
        "endpoint": None,
        "created_at": "2026-01-01T00:00:00Z",
        "expires_at": None,
        "ttl_seconds": None,
    }


@pytest.fixture
def server_with_a_releasing_allocation() -> Iterator[str]:
    """A server whose list holds one ready and one releasing allocation (the emulator
    releases at once, so it never shows ``releasing``)."""
    body = json.dumps(
        {"data": [_allocation("alloc_ready", "ready"), _allocation("alloc_going", "releasing")]}
    ).encode()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert (scope["method"], scope["path"]) == ("GET", "/v1/allocate")
        headers = [(b"content-type", b"application/json"), (b"x-request-id", b"req_1")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    with serve_in_thread(app, "127.0.0.1", 0) as url:
        yield url


def test_allocations_list_all_states_adds_the_ones_being_released(
    capsys: pytest.CaptureFixture[str],
    server_with_a_releasing_allocation: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOSTED_AI_API_KEY", "k")
    url = ["--base-url", server_with_a_releasing_allocation, "--json"]
    _, out, _ = run(capsys, "allocations", "list", *url)
    assert [a["id"] for a in json.loads(out)] == ["alloc_ready"]
    _, out, _ = run(capsys, "allocations", "list", "--all-states", *url)
    assert [(a["id"], a["status"]) for a in json.loads(out)] == [
        ("alloc_ready", "ready"),
        ("alloc_going", "releasing"),
    ]
    _, out, _ = run(capsys, "allocations", "list", "--all-states", *url[:2])
    assert out.splitlines()[2].split()[4:] == ["releasing", "2026-01-01T00:00:00+00:00", "never"]


# allocations release ---------------------------------------------------------------------


def test_release_by_id_frees_the_gpus(
    capsys: pytest.CaptureFixture[str], hostedai_env: str, hostedai_emulator: Emulator
) -> None:
    first, second, kept = (allocate(hostedai_emulator) for _ in range(3))
    status, out, err = run(capsys, "allocations", "release", first, second)
    assert (status, err) == (0, "")
    assert out == f"{first}: released\n{second}: released\n"
    assert [a.id for a in hostedai_emulator.live_allocations()] == [kept]
    hostedai_emulator.reset()


def test_release_reports_an_unknown_id_and_goes_on(
    capsys: pytest.CaptureFixture[str], hostedai_env: str, hostedai_emulator: Emulator
) -> None:
    real = allocate(hostedai_emulator)
    status, out, err = run(capsys, "allocations", "release", "alloc_typo", real)
    assert status == 1
    assert out == f"{real}: released\n"
    assert_one_error_line(
        err, "harpoon allocations release: error: alloc_typo: there is no allocation"
    )
    assert hostedai_emulator.live_allocations() == []


def test_release_says_when_an_allocation_was_already_finished(
    capsys: pytest.CaptureFixture[str], hostedai_env: str, hostedai_emulator: Emulator
) -> None:
    released, expired = allocate(hostedai_emulator), allocate(hostedai_emulator)
    assert main(["allocations", "release", released]) == 0
    hostedai_emulator.expire_allocation(expired)
    capsys.readouterr()
    status, out, _ = run(capsys, "allocations", "release", "--json", released, expired)
    assert status == 0
    assert json.loads(out) == [
        {"id": released, "outcome": "already released", "error": None},
        {"id": expired, "outcome": "already expired", "error": None},
    ]


def test_release_all_frees_every_allocation(
    capsys: pytest.CaptureFixture[str], hostedai_env: str, hostedai_emulator: Emulator
) -> None:
    ids = [allocate(hostedai_emulator) for _ in range(3)]
    status, out, _ = run(capsys, "allocations", "release", "--all")
    assert status == 0
    assert out.splitlines() == [f"{i}: released" for i in ids]
    assert hostedai_emulator.live_allocations() == []
    status, out, _ = run(capsys, "allocations", "release", "--all")
    assert (status, out) == (0, "nothing to release: no allocations hold GPUs in pool gpu-pool-1\n")
    assert run(capsys, "allocations", "release", "--all", "--json")[:2] == (0, "[]\n")


@pytest.mark.hostedai_faults(Fault("rate_limit", method="DELETE", times=1, retry_after=3600))
def test_a_failed_release_is_reported_and_the_others_still_run(
    capsys: pytest.CaptureFixture[str], hostedai_env: str, hostedai_emulator: Emulator
) -> None:
    first, second = allocate(hostedai_emulator), allocate(hostedai_emulator)
    status, out, err = run(capsys, "allocations", "release", "--all", "--json")
    assert status == 1
    results = json.loads(out)
    assert [(r["id"], r["outcome"]) for r in results] == [(first, "failed"), (second, "released")]
    assert results[0]["error"].startswith("429 rate_limited")
    assert err == ""  # the JSON carries the error: no text line besides it
    assert [a.id for a in hostedai_emulator.live_allocations()] == [first]
    hostedai_emulator.reset()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["allocations", "release"], "one of the arguments ID --all is required"),
        (
            ["allocations", "release", "--all", "alloc_1"],
            "argument ID: not allowed with argument --all",
        ),
    ],
)
def test_release_needs_ids_or_all(
    capsys: pytest.CaptureFixture[str], hostedai_env: str, argv: list[str], message: str
) -> None:
    status, out, err = run(capsys, *argv)
    assert (status, out) == (2, "")
    assert err == (
        f"harpoon allocations release: error: {message} (see harpoon allocations release --help)\n"
    )


# Errors ----------------------------------------------------------------------------------


def test_a_missing_address_or_key_is_one_line(
    capsys: pytest.CaptureFixture[str], no_env: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, _, err = run(capsys, "pools")
    assert status == 2
    assert_one_error_line(
        err, "harpoon pools: error: no API address: pass --base-url or set HOSTED_AI_BASE_URL"
    )
    status, _, err = run(capsys, "health", "--base-url", "http://127.0.0.1:9")
    assert status == 2
    assert_one_error_line(err, "harpoon health: error: no API key: set HOSTED_AI_API_KEY")


def test_a_configuration_error_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTED_AI_API_KEY", "sk-secret-value")
    status, _, err = run(capsys, "health", "--base-url", "http://api.example.com")
    assert status == 2
    assert_one_error_line(err, "harpoon health: error: refusing plain http://")
    assert "sk-secret-value" not in err


@pytest.mark.parametrize(
    ("option", "env", "advice"),
    [
        ("ftp://x", None, "must be an absolute http:// or https:// URL (from --base-url)"),
        (None, "ftp://x", "must be an absolute http:// or https:// URL (from HOSTED_AI_BASE_URL)"),
        ("http://api.example.com", None, "Use https://, or pass --allow-insecure-http if you "),
        ("http://user:pw@127.0.0.1:9", None, "set HOSTED_AI_API_KEY instead"),
    ],
)
def test_configuration_errors_give_the_commands_advice_not_the_pythons(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    no_env: None,
    option: str | None,
    env: str | None,
    advice: str,
) -> None:
    monkeypatch.setenv("HOSTED_AI_API_KEY", "k")
    if env is not None:
        monkeypatch.setenv("HOSTED_AI_BASE_URL", env)
    status, _, err = run(capsys, "health", *(["--base-url", option] if option else []))
    assert status == 2
    assert_one_error_line(err, "harpoon health: error: ")
    assert advice in err
    for python in ("base_url=", "api_key=", "allow_insecure_http"):
        assert python not in err


def test_the_sdks_own_configuration_errors_still_name_its_arguments() -> None:
    with pytest.raises(harpoon.ConfigurationError, match=r"pass allow_insecure_http=True"):
        harpoon.HostedAI(base_url="http://api.example.com", api_key="k")
    with pytest.raises(harpoon.ConfigurationError, match=r"pass base_url=\)"):
        harpoon.HostedAI(base_url="ftp://x", api_key="k")


@pytest.mark.skipif(sys.platform != "linux", reason="0.0.0.0 reaches the local host on Linux")
def test_allow_insecure_http_lets_a_plain_http_address_through(
    capsys: pytest.CaptureFixture[str], hostedai_env: str
) -> None:
    # 0.0.0.0 is not a loopback address to the SDK's check, yet it reaches the local server.
    url = hostedai_env.replace("127.0.0.1", "0.0.0.0")
    assert run(capsys, "health", "--base-url", url)[0] == 2
    status, out, _ = run(capsys, "health", "--base-url", url, "--allow-insecure-http")
    assert (status, out.split()[0]) == (0, "ok")


@pytest.mark.hostedai_emulator(api_keys=["the-right-key"])
def test_an_api_error_is_one_line_and_never_shows_the_key(
    capsys: pytest.CaptureFixture[str], hostedai_env: str
) -> None:
    status, out, err = run(capsys, "allocations", "list")
    assert (status, out) == (1, "")
    assert_one_error_line(err, "harpoon allocations list: error: 401 ")
    assert "test-key" not in err


def test_an_unreachable_server_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("HOSTED_AI_API_KEY", "k")
    monkeypatch.setenv("HOSTED_AI_BASE_URL", f"http://127.0.0.1:{port}")
    status, _, err = run(capsys, "health", "--timeout", "2")
    assert status == 1
    assert_one_error_line(err, "harpoon health: error: ")


@pytest.mark.parametrize(
    ("argv", "prog", "needle"),
    [
        ([], "harpoon", "the following arguments are required: COMMAND"),
        (["fly"], "harpoon", "argument COMMAND: invalid choice: 'fly'"),
        (["allocations"], "harpoon allocations", "the following arguments are required: ACTION"),
        (["health", "--timeout", "0"], "harpoon health", "above 0, got '0'"),
        (["health", "--timeout", "soon"], "harpoon health", "above 0, got 'soon'"),
        (["pools", "--colour"], "harpoon pools", "unrecognized arguments: --colour"),
        (["infer"], "harpoon infer", "the following arguments are required: TEXT"),
        (["infer", "Hi", "--max-tokens", "0"], "harpoon infer", "above 0, got '0'"),
    ],
)
def test_bad_usage_exits_2_with_one_line_pointing_at_the_help(
    capsys: pytest.CaptureFixture[str], argv: list[str], prog: str, needle: str
) -> None:
    status, out, err = run(capsys, *argv)
    assert (status, out) == (2, "")
    assert_one_error_line(err, f"{prog}: error: ")
    assert needle in err
    assert err.endswith(f" (see {prog} --help)\n")


@pytest.mark.parametrize("argv", [["--api-key", "sk-typed-key"], ["--api-key=sk-typed-key"]])
def test_an_api_key_on_the_command_line_is_refused_without_echoing_it(
    capsys: pytest.CaptureFixture[str], argv: list[str]
) -> None:
    status, out, err = run(capsys, "pools", *argv)
    assert (status, out) == (2, "")
    assert_one_error_line(err, "harpoon pools: error: --api-key is not an option: set ")
    assert "sk-typed-key" not in err


def test_ctrl_c_exits_130_without_a_traceback(
    capsys: pytest.CaptureFixture[str], hostedai_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(self: harpoon.HostedAI) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(harpoon.HostedAI, "health", interrupted)
    status, _, err = run(capsys, "health")
    assert (status, err) == (130, "harpoon: interrupted\n")


# --json failures ---------------------------------------------------------------------------


def json_error(out: str) -> dict[str, Any]:
    """The one JSON error object on stdout."""
    document = json.loads(out)
    assert list(document) == ["error"], out
    error: dict[str, Any] = document["error"]
    return error


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (
            ["pools", "--json", "--base-url", "ftp://x"],
            {"type": "ConfigurationError", "exit_code": 2, "message": "base_url 'ftp://x' "},
        ),
        (
            ["pools", "--json", "--colour"],
            {"type": "UsageError", "exit_code": 2, "message": "unrecognized arguments: --colour"},
        ),
        (
            ["infer", "Hi", "--json", "--max-tokens", "0"],
            {"type": "UsageError", "exit_code": 2, "message": "argument --max-tokens: expected"},
        ),
        (
            ["pools", "--json", "--api-key", "sk-typed-key"],
            {"type": "UsageError", "exit_code": 2, "message": "--api-key is not an option"},
        ),
        (
            ["infer", "Hi", "--json", "--max-tokens", "99999"],
            {"type": "UsageError", "exit_code": 2, "message": "the request is too large for "},
        ),
        (
            ["allocations", "list", "--json", "--pool", "nope"],
            {"type": "NotFoundError", "exit_code": 1, "message": "there is no pool 'nope' (from "},
        ),
    ],
)
def test_json_reports_a_failure_as_a_json_object_not_a_text_line(
    capsys: pytest.CaptureFixture[str],
    hostedai_env: str,
    argv: list[str],
    expected: dict[str, Any],
) -> None:
    status, out, err = run(capsys, *argv)
    assert (status, err) == (expected["exit_code"], "")
    error = json_error(out)
    assert (error["type"], error["exit_code"]) == (expected["type"], expected["exit_code"])
    assert error["message"].startswith(expected["message"]), error
    assert "sk-typed-key" not in out


def test_json_reports_a_missing_address_as_a_configuration_error(
    capsys: pytest.CaptureFixture[str], no_env: None
) -> None:
    status, out, err = run(capsys, "health", "--json")
    assert (status, err) == (2, "")
    assert json_error(out) == {
        "type": "ConfigurationError",
        "message": "no API address: pass --base-url or set HOSTED_AI_BASE_URL",
        "exit_code": 2,
    }


@pytest.mark.hostedai_emulator(api_keys=["the-right-key"])
def test_json_reports_an_api_error_with_its_status_and_request_id(
    capsys: pytest.CaptureFixture[str], hostedai_env: str
) -> None:
    status, out, err = run(capsys, "allocations", "list", "--json")
    assert (status, err) == (1, "")
    error = json_error(out)
    assert (error["type"], error["exit_code"]) == ("AuthenticationError", 1)
    assert (error["status_code"], error["code"]) == (401, "invalid_api_key")
    assert error["request_id"].startswith("req_")
    assert error["message"].startswith("401 invalid_api_key")
    assert "test-key" not in out


@pytest.mark.hostedai_faults(Fault("error", path="/v1/inference", status=500))
def test_json_reports_an_infer_whose_every_attempt_failed(
    capsys: pytest.CaptureFixture[str], hostedai_env: str, hostedai_emulator: Emulator
) -> None:
    status, out, err = run(capsys, "infer", "Hi there!", "--json")
    assert (status, err) == (1, "")
    assert json_error(out)["type"] == "AllAttemptsFailedError"
    status, out, err = run(capsys, "infer", "Hi there!", "--json", "--stream")
    assert (status, err) == (1, "")
    assert json_error(out.splitlines()[-1])["type"] == "AllAttemptsFailedError"
    assert hostedai_emulator.live_allocations() == []


def test_json_reports_ctrl_c(
    capsys: pytest.CaptureFixture[str], hostedai_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    def interrupted(self: harpoon.HostedAI) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(harpoon.HostedAI, "health", interrupted)
    status, out, err = run(capsys, "health", "--json")
    assert (status, err) == (130, "")
    assert json_error(out) == {
        "type": "KeyboardInterrupt",
        "message": "interrupted",
        "exit_code": 130,
    }


def test_a_json_after_double_dash_is_an_argument_not_the_option(
    capsys: pytest.CaptureFixture[str], hostedai_env: str
) -> None:
    status, out, err = run(capsys, "infer", "--max-tokens", "0", "--", "--json")
    assert (status, out) == (2, "")
    assert_one_error_line(err, "harpoon infer: error: argument --max-tokens: expected")


# --help ----------------------------------------------------------------------------------

COMMANDS = {
    (): ["emulator", "health", "pools", "allocations", "infer", "bench", "--version"],
    ("health",): ["--base-url", "--pool", "--timeout", "--json", "degraded", "key refused"],
    ("pools",): ["--base-url", "--pool", "--timeout", "--json"],
    ("allocations",): ["list", "release"],
    ("allocations", "list"): ["--all-states", "--json", "--pool", "releasing"],
    ("allocations", "release"): ["ID", "--all", "--json", "--pool"],
    ("bench",): ["NAME", "--dir", "--json", "--write", "table"],
    ("infer",): [
        "TEXT",
        "--target",
        "--stream",
        "--max-tokens",
        "--json",
        "--pool",
        "Orchestrator",
    ],
    ("emulator",): [
        "--port",
        "--host",
        "--pools",
        "--error-rate",
        "--drop-rate",
        "--seed",
        "(default: 8080)",
        "(default: 127.0.0.1)",
        "(default: 600)",
    ],
}


@pytest.mark.parametrize("command", list(COMMANDS))
def test_each_command_has_help_naming_its_options(
    capsys: pytest.CaptureFixture[str], command: tuple[str, ...]
) -> None:
    status, out, _ = run(capsys, *command, "--help")
    assert status == 0
    assert out.startswith(f"usage: {' '.join(('harpoon', *command))} ")
    for word in COMMANDS[command]:
        assert word in out
    if command and command[0] not in ("bench", "emulator", "allocations"):
        assert "HOSTED_AI_API_KEY" in out
    if command == ("bench",):
        assert "HOSTED_AI_" not in out  # bench calls no API
        assert out.rstrip().endswith("130 when interrupted.")


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--version")[:2] == (0, f"harpoon {harpoon.__version__}\n")


def test_the_help_options_are_the_ones_the_parser_takes(
    capsys: pytest.CaptureFixture[str], hostedai_env: str
) -> None:
    # Every option a command's help lists is accepted by that command.
    for argv in (
        ["health", "--json", "--timeout", "5", "--pool", "gpu-pool-1", "--base-url", hostedai_env],
        ["health", "--allow-insecure-http"],
        ["pools", "--json", "--timeout", "5", "--pool", "gpu-pool-1", "--base-url", hostedai_env],
        ["allocations", "list", "--all-states", "--json", "--timeout", "5"],
        ["allocations", "release", "--all", "--json", "--timeout", "5"],
        ["infer", "Hi", "--target", "gemma-3-270m", "--stream", "--max-tokens", "2", "--json"],
    ):
        assert run(capsys, *argv)[0] == 0, argv


# emulator --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--port", "http"], "harpoon emulator: error: argument --port: expected a port"),
        (["--pools", "x"], "harpoon emulator: error: argument --pools: expected POOL=GPUS"),
        (["--ready-delay", "-1"], "harpoon emulator: error: argument --ready-delay: expected "),
        (["--error-rate", "2"], "harpoon emulator: error: argument --error-rate: expected a "),
        (
            ["--error-rate", "0.8", "--drop-rate", "0.8"],
            "harpoon emulator: error: the fault rates add up to more than 1 (--error-rate 0.8, "
            "--drop-rate 0.8)",
        ),
    ],
)
def test_emulator_rejects_bad_options_in_one_line_under_its_name(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    status, out, err = run(capsys, "emulator", "--port", "0", *argv)
    assert (status, out) == (2, "")
    assert_one_error_line(err, message)


def test_emulator_on_a_busy_port_is_one_line_under_its_name(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        status, out, err = run(capsys, "emulator", "--port", str(port))
    assert (status, out) == (1, "")
    assert err == (
        f"harpoon emulator: error: cannot serve the emulator on 127.0.0.1:{port}: "
        "the port is already in use\n"
    )


# bench -----------------------------------------------------------------------------------


@pytest.fixture
def bench_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "bench"
    directory.mkdir()
    (directory / "fast.py").write_text(
        "from hostedai_harpoon._benchmarks import record\n"
        "print('fast: ratio 1.02 PASS')\n"
        "record('fast call', 1.02, baseline='raw httpx', target='<= 1.1', passed=True)\n"
    )
    (directory / "slow.py").write_text(
        "import sys\nprint('slow: ratio 1.90 FAIL')\nprint('to stderr', file=sys.stderr)\n"
        "sys.exit(1)\n"
    )
    return directory


def test_bench_runs_every_script_and_prints_its_output(
    capsys: pytest.CaptureFixture[str], bench_dir: Path
) -> None:
    status, out, _ = run(capsys, "bench", "--dir", str(bench_dir))
    assert status == 1
    lines = out.splitlines()
    assert lines[:3] == ["== bench/fast.py", "fast: ratio 1.02 PASS", lines[2]]
    assert lines[2].startswith("== bench/fast.py: ok in ")
    assert lines[4:8] == ["== bench/slow.py", "slow: ratio 1.90 FAIL", "to stderr", lines[7]]
    assert lines[7].startswith("== bench/slow.py: FAILED (exit status 1) in ")
    table = out.split("\n\n", 2)[2]
    assert table.startswith("Measured on ")
    assert "| fast | fast call | 1.020 | raw httpx | <= 1.1 | PASS |" in table
    assert "| slow | no figures (exit status 1) | | | | FAIL |" in table


def test_bench_json_and_a_selection(capsys: pytest.CaptureFixture[str], bench_dir: Path) -> None:
    status, out, _ = run(capsys, "bench", "fast", "--dir", str(bench_dir), "--json")
    assert status == 0
    (result,) = json.loads(out)
    assert (result["script"], result["exit_status"]) == ("bench/fast.py", 0)
    assert result["output"] == "fast: ratio 1.02 PASS\n"
    assert result["figures"] == [
        {
            "name": "fast call",
            "value": 1.02,
            "baseline": "raw httpx",
            "unit": "ratio",
            "target": "<= 1.1",
            "passed": True,
        }
    ]


def test_bench_write_puts_the_table_between_the_page_markers(
    capsys: pytest.CaptureFixture[str], bench_dir: Path, tmp_path: Path
) -> None:
    (bench_dir / "slow.py").unlink()
    page = tmp_path / "performance.md"
    page.write_text(f"# Perf\n\n{TABLE_START}\nold table\n{TABLE_END}\n\nafter\n")
    status, out, _ = run(capsys, "bench", "--dir", str(bench_dir), "--write", str(page))
    assert status == 0
    assert out.endswith(f"written to {page}\n")
    text = page.read_text()
    assert "old table" not in text
    assert text.startswith(f"# Perf\n\n{TABLE_START}\nMeasured on ")
    assert text.endswith(
        f"| fast | fast call | 1.020 | raw httpx | <= 1.1 | PASS |\n{TABLE_END}\n\nafter\n"
    )


def test_bench_write_refuses_a_page_without_markers_and_a_selection(
    capsys: pytest.CaptureFixture[str], bench_dir: Path, tmp_path: Path
) -> None:
    page = tmp_path / "performance.md"
    page.write_text("# Perf\n")
    status, _, err = run(capsys, "bench", "fast", "--dir", str(bench_dir), "--write", str(page))
    assert status == 2
    assert_one_error_line(err, "harpoon bench: error: --write records every benchmark")
    (bench_dir / "slow.py").unlink()
    status, _, err = run(capsys, "bench", "--dir", str(bench_dir), "--write", str(page))
    assert status == 2
    assert_one_error_line(err, f"harpoon bench: error: {page} has no table markers")
    assert page.read_text() == "# Perf\n"


def test_bench_without_a_bench_directory_says_so(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    status, out, err = run(capsys, "bench", "--dir", str(tmp_path / "nowhere"))
    assert (status, out) == (2, "")
    assert_one_error_line(err, "harpoon bench: error: no benchmarks: ")
    assert "ships with the source tree" in err


def test_bench_names_the_benchmarks_there_are(capsys: pytest.CaptureFixture[str]) -> None:
    # The default directory is the source tree's bench/: list it without running anything.
    status, _, err = run(capsys, "bench", "no-such-benchmark")
    assert status == 2
    scripts = sorted(p.stem for p in (ROOT / "bench").glob("*.py"))
    expected = ", ".join(name for name in scripts if name != "run_all")
    assert_one_error_line(err, "harpoon bench: error: no benchmark named no-such-benchmark")
    assert err.rstrip().endswith(f"there are: {expected}")


# The installed script --------------------------------------------------------------------


def test_importing_the_package_does_not_import_the_cli_or_the_plugin() -> None:
    code = (
        "import sys, hostedai_harpoon; "
        "print(sorted(m for m in sys.modules if m.startswith('hostedai_harpoon.')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=30
    ).stdout
    assert "hostedai_harpoon.cli" not in out
    assert "hostedai_harpoon.pytest_plugin" not in out
    assert "hostedai_harpoon.testing" not in out


def test_the_installed_script_serves_lists_and_releases(tmp_path: Path) -> None:
    assert HARPOON.is_file(), "the harpoon console script is not installed"
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    server = subprocess.Popen(
        [str(HARPOON), "emulator", "--port", "0", "--pools", "p1=4"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        banner = server.stdout.readline()
        assert banner.startswith("HostedAI emulator serving on http://127.0.0.1:")
        url = banner.split()[-1]
        env.update(HOSTED_AI_BASE_URL=url, HOSTED_AI_API_KEY="k")

        def harpoon_(*argv: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [str(HARPOON), *argv], capture_output=True, text=True, env=env, timeout=30
            )

        response = httpx.post(
            f"{url}/v1/allocate",
            json={"model": "gemma-3-270m"},
            headers={"Authorization": "Bearer k"},
        )
        allocation_id = response.json()["id"]
        listed = harpoon_("allocations", "list", "--json")
        assert listed.returncode == 0, listed.stderr
        assert [a["id"] for a in json.loads(listed.stdout)] == [allocation_id]
        released = harpoon_("allocations", "release", allocation_id)
        assert (released.returncode, released.stdout) == (0, f"{allocation_id}: released\n")
        assert harpoon_("allocations", "list").stdout == "no allocations hold GPUs\n"
        missing = harpoon_("allocations", "release", "alloc_nope")
        assert missing.returncode == 1
        assert missing.stderr == (
            "harpoon allocations release: error: alloc_nope: there is no allocation 'alloc_nope'\n"
        )
    finally:
        server.send_signal(signal.SIGINT)
        assert server.wait(timeout=10) == 0
        assert server.stderr is not None
        assert "Traceback" not in server.stderr.read()


# infer -----------------------------------------------------------------------------------

COMPLEX = (
    "Prove step by step that the square root of 2 is irrational, then explain why the proof "
    "fails for the square root of 4. Show every step and justify each inference."
)


def test_infer_prints_the_decision_its_reason_and_the_answer(
    capsys: pytest.CaptureFixture[str], hostedai_env: str, hostedai_emulator: Emulator
) -> None:
    status, out, err = run(capsys, "infer", "Hi there!", "--max-tokens", "4")
    assert (status, err) == (0, "")
    target, reason, blank, text, usage = out.splitlines()
    assert target == "target: gemma-3-270m"
    assert reason.startswith("reason: complexity ")
    assert reason.endswith("small tier, gemma-3-270m")
    assert blank == ""
    assert len(text.split()) == 4
    assert usage.startswith("(3 tokens in, 4 out, ")
    (allocation,) = hostedai_emulator.allocations()
    assert (allocation.model, allocation.status.value) == ("gemma-3-270m", "released")

    _, out, _ = run(capsys, "infer", COMPLEX, "--max-tokens", "4")
    assert out.splitlines()[0] == "target: qwen3-30b-a3b"


def test_infer_json_and_a_pinned_target(
    capsys: pytest.CaptureFixture[str], hostedai_env: str
) -> None:
    status, out, _ = run(capsys, "infer", "Hi", "--target", "qwen3-30b-a3b", "--json")
    assert status == 0
    routed = json.loads(out)
    assert (routed["target"], routed["model"]) == ("qwen3-30b-a3b", "qwen3-30b-a3b")
    assert "qwen3-30b-a3b" in routed["reason"]
    assert routed["text"]
    assert routed["usage"]["output_tokens"] > 0
    [attempt] = routed["attempts"]
    assert attempt["target"] == "qwen3-30b-a3b"
    assert attempt["allocation_id"].startswith("alloc_")
    assert attempt["error"] is None


def test_infer_streams_the_answer_after_the_decision(
    capsys: pytest.CaptureFixture[str], hostedai_env: str, hostedai_emulator: Emulator
) -> None:
    status, out, _ = run(capsys, "infer", "Hi", "--stream", "--max-tokens", "5")
    assert status == 0
    target, reason, blank, text, usage = out.splitlines()
    assert (target, blank) == ("target: gemma-3-270m", "")
    assert reason.startswith("reason: ")
    assert len(text.split()) == 5
    assert re.fullmatch(r"\(1 token in, 5 out, \d+\.\d\ds, about \$\d+\.\d{6}\)", usage), usage
    assert hostedai_emulator.streams_completed == 1

    status, out, _ = run(capsys, "infer", "Hi", "--stream", "--max-tokens", "3", "--json")
    decision, *chunks, outcome = (json.loads(line) for line in out.splitlines())
    assert decision["target"] == "gemma-3-270m"
    assert len([c for c in chunks if c["delta"]]) == 3
    assert chunks[-1]["finish_reason"] == "length"
    assert outcome["usage"] == {"input_tokens": 1, "output_tokens": 3}
    assert outcome["latency"] > 0
    assert outcome["cost"] > 0
    [attempt] = outcome["attempts"]
    assert (attempt["target"], attempt["error"]) == ("gemma-3-270m", None)


@pytest.mark.hostedai_faults(Fault("error", path="/v1/inference", status=500, times=1))
def test_infer_stream_shows_a_failover_and_prices_every_attempt(
    capsys: pytest.CaptureFixture[str], hostedai_env: str
) -> None:
    status, out, _ = run(capsys, "infer", "Hi there!", "--stream", "--max-tokens", "4")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "target: qwen3-30b-a3b"
    assert lines[4].startswith("failed over: gemma-3-270m failed (")
    assert lines[5].startswith("(3 tokens in, 4 out, ")


@pytest.mark.hostedai_faults(Fault("error", path="/v1/inference", status=500, times=1))
def test_infer_shows_a_failover(capsys: pytest.CaptureFixture[str], hostedai_env: str) -> None:
    status, out, _ = run(capsys, "infer", "Hi there!", "--max-tokens", "4")
    assert status == 0
    lines = out.splitlines()
    assert lines[0] == "target: qwen3-30b-a3b"
    assert lines[4].startswith("failed over: gemma-3-270m failed (")
    assert "500" in lines[4]


@pytest.mark.hostedai_faults(Fault("error", path="/v1/inference", status=500))
def test_infer_when_every_attempt_fails_is_one_line(
    capsys: pytest.CaptureFixture[str], hostedai_env: str, hostedai_emulator: Emulator
) -> None:
    status, out, err = run(capsys, "infer", "Hi there!")
    assert (status, out) == (1, "")
    assert_one_error_line(err, "harpoon infer: error: ")
    assert hostedai_emulator.live_allocations() == []


def test_infer_says_one_token_in_the_singular(
    capsys: pytest.CaptureFixture[str], hostedai_env: str
) -> None:
    status, out, _ = run(capsys, "infer", "Hi", "--max-tokens", "2")
    assert status == 0
    assert out.splitlines()[-1].startswith("(1 token in, 2 out, ")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["Hi", "--max-tokens", "99999"],
            "the request is too large for every target: gemma-3-270m takes --max-tokens up "
            "to 8192; qwen3-30b-a3b takes --max-tokens up to 16384",
        ),
        (
            ["Hi", "--max-tokens", "9000", "--target", "gemma-3-270m"],
            "the request is too large for the target gemma-3-270m: gemma-3-270m takes "
            "--max-tokens up to 8192",
        ),
        (
            ["word " * 30_000, "--max-tokens", "10"],
            "the request is too large for every target: gemma-3-270m's context window holds "
            "32768 tokens, the prompt and --max-tokens need about 37511; qwen3-30b-a3b's",
        ),
    ],
)
def test_infer_too_large_for_every_target_is_bad_usage_not_an_outage(
    capsys: pytest.CaptureFixture[str],
    hostedai_env: str,
    hostedai_emulator: Emulator,
    argv: list[str],
    message: str,
) -> None:
    status, out, err = run(capsys, "infer", *argv)
    assert (status, out) == (2, "")
    assert_one_error_line(err, f"harpoon infer: error: {message}")
    assert hostedai_emulator.allocations() == []


def test_infer_with_empty_text_is_bad_usage_and_leases_nothing(
    capsys: pytest.CaptureFixture[str], hostedai_env: str, hostedai_emulator: Emulator
) -> None:
    status, out, err = run(capsys, "infer", "")
    assert (status, out) == (2, "")
    assert_one_error_line(err, "harpoon infer: error: text must not be empty")
    assert hostedai_emulator.allocations() == []


def test_infer_too_large_for_one_target_only_goes_to_the_other(
    capsys: pytest.CaptureFixture[str], hostedai_env: str
) -> None:
    status, out, _ = run(capsys, "infer", "Hi", "--max-tokens", "9000")
    assert status == 0
    assert out.splitlines()[0] == "target: qwen3-30b-a3b"


@pytest.mark.parametrize(("max_tokens", "expected"), [("256", 1), ("99999", 2)])
def test_infer_with_no_healthy_target_is_an_outage_unless_no_target_could_take_it(
    capsys: pytest.CaptureFixture[str],
    hostedai_env: str,
    monkeypatch: pytest.MonkeyPatch,
    max_tokens: str,
    expected: int,
) -> None:
    from hostedai_harpoon.orchestrator import Orchestrator

    async def down(self: Orchestrator, text: str, **options: Any) -> None:
        raise harpoon.NoRouteError(
            "no healthy target can take the request (gemma-3-270m: unhealthy; ...)",
            reasons={"gemma-3-270m": "unhealthy", "qwen3-30b-a3b": "unhealthy"},
        )

    monkeypatch.setattr(Orchestrator, "process", down)
    status, _, err = run(capsys, "infer", "Hi", "--max-tokens", max_tokens)
    assert status == expected
    assert_one_error_line(err, "harpoon infer: error: ")
    assert ("too large" in err) is (expected == 2)


def test_infer_rejects_an_unknown_target(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "infer", "Hi", "--target", "gpt-9")
    assert status == 2
    last = err.splitlines()[-1]
    assert last.startswith("harpoon infer: error: argument --target: invalid choice: 'gpt-9'")
    assert "gemma-3-270m" in last
    assert "qwen3-30b-a3b" in last


@pytest.mark.hostedai_emulator(stream_chunk_delay=0.05)
def test_ctrl_c_during_infer_releases_the_allocation(
    hostedai_server: str, hostedai_emulator: Emulator
) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env.update(HOSTED_AI_BASE_URL=hostedai_server, HOSTED_AI_API_KEY="k")
    process = subprocess.Popen(
        [str(HARPOON), "infer", "Hi", "--stream", "--max-tokens", "2000"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "target: gemma-3-270m\n"
        process.stdout.readline()
        process.stdout.readline()
        assert process.stdout.read(1)  # the stream has started: the GPU is held
        assert [a.model for a in hostedai_emulator.live_allocations()] == ["gemma-3-270m"]
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert (process.returncode, err) == (130, "harpoon: interrupted\n")
    assert hostedai_emulator.live_allocations() == []
