"""The emulator over real TCP: ``Emulator.serve()`` and ``python -m hostedai_harpoon.testing``."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from hostedai_harpoon.testing import Emulator, Fault, FaultPlan
from hostedai_harpoon.testing.__main__ import main as serve_main
from hostedai_harpoon.testing._asgi import ConnectionDropped
from tests.conftest import EmulatorFactory

from .conftest import AUTH

ALLOC = {"model": "gemma-3-270m"}


def _eventually(condition: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.fixture
def served(
    make_emulator: EmulatorFactory,
) -> Iterator[Callable[..., tuple[Emulator, httpx.Client]]]:
    """Serve an emulator over TCP and give an authenticated client of it."""
    stack: list[Callable[[], object]] = []

    def start(**kwargs: object) -> tuple[Emulator, httpx.Client]:
        emu = make_emulator(**kwargs)
        serving = emu.serve()
        url = serving.__enter__()
        http = httpx.Client(base_url=url, headers=AUTH, timeout=5)
        stack.append(lambda: serving.__exit__(None, None, None))
        stack.append(http.close)
        return emu, http

    yield start
    for close in reversed(stack):
        close()


def test_serve_answers_on_localhost_and_stops_on_exit(emulator: Emulator) -> None:
    with emulator.serve() as url:
        assert url.startswith("http://127.0.0.1:")
        with httpx.Client(base_url=url, headers=AUTH) as http:
            assert http.get("/v1/health").json()["status"] == "ok"
            created = http.post("/v1/allocate", json=ALLOC)
            assert created.status_code == 201
            assert created.headers["content-type"] == "application/json"
    assert [e.path for e in emulator.exchanges] == ["/v1/health", "/v1/allocate"]
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/v1/health", timeout=1)


def test_serve_stops_promptly_with_a_client_still_connected(emulator: Emulator) -> None:
    with emulator.serve() as url:
        http = httpx.Client(base_url=url)
        http.get("/v1/health")
        started = time.monotonic()
    assert time.monotonic() - started < 3
    http.close()


def test_asgi_error_envelopes_over_tcp(
    served: Callable[..., tuple[Emulator, httpx.Client]],
) -> None:
    _, http = served()
    response = http.post("/v1/allocate", content=b"{", headers={"content-type": "application/json"})
    assert response.status_code == 400
    assert response.json()["error"]["request_id"] == response.headers["x-request-id"]
    assert http.delete("/v1/pools").headers["allow"] == "GET"
    assert http.get("/v1/allocate", params={"pool_id": "gpu-pool-1"}).json() == {"data": []}


@pytest.mark.parametrize("when", ["before", "after"])
def test_drop_over_tcp_is_a_transport_error_not_a_500(
    served: Callable[..., tuple[Emulator, httpx.Client]], when: str
) -> None:
    plan = FaultPlan(rules=[Fault("drop", path="/v1/allocate", when=when, times=1)])  # type: ignore[arg-type]
    emu, http = served(faults=plan)
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        http.post("/v1/allocate", json=ALLOC)
    assert len(emu.live_allocations()) == (1 if when == "after" else 0)
    assert http.post("/v1/allocate", json=ALLOC).status_code == 201


async def test_drop_over_tcp_with_the_async_client(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(faults=FaultPlan(drop_rate=1.0, paths=["/v1/pools"]))
    with emu.serve() as url:
        async with httpx.AsyncClient(base_url=url, headers=AUTH) as http:
            with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
                await http.get("/v1/pools")
            assert (await http.get("/v1/health")).status_code == 200


def test_latency_over_tcp_delays_or_times_out(
    served: Callable[..., tuple[Emulator, httpx.Client]],
) -> None:
    rules = [Fault("latency", delay=0.1, times=1), Fault("latency", delay=2, times=1)]
    _, http = served(faults=FaultPlan(rules=rules))
    started = time.monotonic()
    assert http.get("/v1/health").status_code == 200
    assert time.monotonic() - started >= 0.1
    with pytest.raises(httpx.ReadTimeout):
        http.get("/v1/health", timeout=0.2)


def test_body_faults_over_tcp_keep_the_message_complete(
    served: Callable[..., tuple[Emulator, httpx.Client]],
) -> None:
    rules = [Fault("malformed", times=1), Fault("truncate", times=1)]
    _, http = served(faults=FaultPlan(rules=rules))
    malformed = http.post("/v1/allocate", json=ALLOC)
    truncated = http.get("/v1/pools")
    assert malformed.status_code == 201
    assert not malformed.content.startswith(b"{")
    assert truncated.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        truncated.json()


def _stream_body(emu: Emulator, http: httpx.Client) -> dict[str, object]:
    alloc_id = http.post("/v1/allocate", json={"model": "qwen3-30b-a3b"}).json()["id"]
    return {"allocation_id": alloc_id, "prompt": "p", "max_tokens": 8, "stream": True}


def test_sse_over_tcp_streams_to_the_end(
    served: Callable[..., tuple[Emulator, httpx.Client]],
) -> None:
    emu, http = served(stream_chunk_delay=0.005)
    with http.stream("POST", "/v1/inference", json=_stream_body(emu, http)) as response:
        assert response.headers["content-type"] == "text/event-stream"
        lines = [line for line in response.iter_lines() if line]
    assert len(lines) == 10
    assert lines[-1] == "data: [DONE]"
    assert _eventually(lambda: emu.streams_completed == 1)
    assert (emu.streams_aborted, emu.open_streams) == (0, 0)


def test_sse_over_tcp_closed_early_is_aborted(
    served: Callable[..., tuple[Emulator, httpx.Client]],
) -> None:
    emu, http = served(stream_chunk_delay=0.05)
    with http.stream("POST", "/v1/inference", json=_stream_body(emu, http)) as response:
        lines = response.iter_lines()  # kept: a dropped iterator closes the response
        first = next(lines)
        assert first.startswith("data: {")
        assert emu.open_streams == 1
    assert _eventually(lambda: emu.streams_aborted == 1)
    assert (emu.streams_completed, emu.open_streams) == (0, 0)
    assert _eventually(lambda: emu.exchanges[-1].aborted)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@contextlib.contextmanager
def _uvicorn_errors() -> Iterator[list[logging.LogRecord]]:
    """What uvicorn logs at ERROR or above meanwhile (attach once the server configured it)."""
    handler = _Records()
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    try:
        yield handler.records
    finally:
        logger.removeHandler(handler)
    handler.records[:] = [r for r in handler.records if r.levelno >= logging.ERROR]


def test_leaving_serve_with_a_stream_open_cuts_it_at_once_and_quietly(
    make_emulator: EmulatorFactory,
) -> None:
    emu = make_emulator(stream_chunk_delay=0.5)
    serving = emu.serve()
    url = serving.__enter__()
    with (
        _uvicorn_errors() as errors,
        httpx.Client(base_url=url, headers=AUTH, timeout=10) as http,
        http.stream("POST", "/v1/inference", json=_stream_body(emu, http)) as response,
    ):
        lines = response.iter_lines()
        assert next(lines).startswith("data: {")
        started = time.monotonic()
        serving.__exit__(None, None, None)
        stopped = time.monotonic() - started
        with contextlib.suppress(httpx.HTTPError):
            rest = list(lines)
            assert "data: [DONE]" not in rest
    assert stopped < 3
    assert errors == []
    assert _eventually(lambda: emu.streams_aborted == 1)
    assert emu.exchanges[-1].aborted


def test_leaving_serve_with_an_answer_delayed_drops_it_quietly(
    make_emulator: EmulatorFactory,
) -> None:
    emu = make_emulator(faults=FaultPlan(rules=[Fault("latency", delay=30, path="/v1/pools")]))
    serving = emu.serve()
    url = serving.__enter__()
    with (
        _uvicorn_errors() as errors,
        httpx.Client(base_url=url, headers=AUTH, timeout=10) as http,
        ThreadPoolExecutor(1) as pool,
    ):
        delayed = pool.submit(http.get, "/v1/pools")
        assert _eventually(lambda: len(emu.exchanges) == 1)
        started = time.monotonic()
        serving.__exit__(None, None, None)
        stopped = time.monotonic() - started
        with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
            delayed.result(5)
    assert stopped < 3
    assert errors == []
    [lost] = emu.exchanges
    assert (lost.status, lost.response_body) == (None, b"")


@pytest.mark.parametrize("path", ["/v1/pools", "/v1/inference"])
async def test_an_answer_whose_task_is_cancelled_is_a_dropped_connection(
    make_emulator: EmulatorFactory, path: str
) -> None:
    emu = make_emulator(
        faults=FaultPlan(rules=[Fault("latency", delay=30, path="/v1/pools")]),
        stream_chunk_delay=30,
    )
    body = b""
    if path == "/v1/inference":
        with emu.http_client(headers=AUTH) as http:
            body = json.dumps(_stream_body(emu, http)).encode()
    requests: list[MutableMapping[str, Any]] = [
        {"type": "http.request", "body": body, "more_body": False}
    ]

    async def receive() -> MutableMapping[str, Any]:
        if requests:
            return requests.pop()
        await asyncio.Event().wait()  # the client never leaves
        raise AssertionError

    sent: list[MutableMapping[str, Any]] = []

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "method": "GET" if path == "/v1/pools" else "POST",
        "path": path,
        "query_string": b"",
        "headers": [(b"authorization", b"Bearer k")],
    }
    answering = asyncio.ensure_future(emu.asgi_app(scope, receive, send))
    while not emu.requests_to(path=path) or (path == "/v1/inference" and not sent):
        await asyncio.sleep(0.01)
    answering.cancel()
    with pytest.raises(ConnectionDropped):
        await answering
    if path == "/v1/pools":
        assert emu.exchanges[-1].status is None
        # Only the header no server can send, which makes the server drop the line.
        assert [message["headers"] for message in sent] == [[(b"x-emulator-drop", b"\n")]]
    else:
        assert emu.exchanges[-1].aborted
        assert sent[-1].get("more_body") is True  # never finished: the connection is closed
    assert emu.open_streams == 0


@pytest.fixture
def process() -> Iterator[Callable[..., tuple[subprocess.Popen[str], str]]]:
    """Run ``python -m hostedai_harpoon.testing`` and read the URL it prints."""
    started: list[subprocess.Popen[str]] = []

    def run(*args: str) -> tuple[subprocess.Popen[str], str]:
        proc = subprocess.Popen(
            [sys.executable, "-m", "hostedai_harpoon.testing", "--port", "0", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        started.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, line + proc.stderr.read() if proc.stderr else line
        return proc, line.strip().rsplit(" ", 1)[-1]

    yield run
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(5)
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


@pytest.mark.parametrize("stop", [signal.SIGINT, signal.SIGTERM])
def test_module_serves_until_a_signal(
    process: Callable[..., tuple[subprocess.Popen[str], str]], stop: signal.Signals
) -> None:
    proc, url = process("--pools", "big=16,small=2", "--api-key", "k1")
    health = httpx.get(f"{url}/v1/health", timeout=5)
    assert health.json()["status"] == "ok"
    pools = httpx.get(f"{url}/v1/pools", headers={"Authorization": "Bearer k1"}, timeout=5)
    assert [(p["id"], p["gpus_total"]) for p in pools.json()["data"]] == [("big", 16), ("small", 2)]
    assert httpx.get(f"{url}/v1/pools", headers=AUTH, timeout=5).status_code == 401
    proc.send_signal(stop)
    assert proc.wait(10) == 0
    assert proc.stderr is not None
    assert "Traceback" not in proc.stderr.read()


def test_module_rejects_bad_pool_syntax() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "hostedai_harpoon.testing", "--pools", "oops"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 2
    assert "POOL=GPUS" in result.stderr


WITHOUT_UVICORN = """
import runpy, sys
sys.modules["uvicorn"] = None  # as if it were not installed
sys.argv = ["python -m hostedai_harpoon.testing", "--port", "0"]
runpy.run_module("hostedai_harpoon.testing", run_name="__main__")
"""


def test_module_without_uvicorn_says_how_to_install_it_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-c", WITHOUT_UVICORN],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )

    assert result.returncode == 2
    assert result.stderr == (
        "serving the emulator needs uvicorn: pip install 'hostedai-harpoon[emulator]'\n"
    )
    assert result.stdout == ""


def test_serving_in_process_without_uvicorn_raises_an_import_error_naming_the_extra(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "uvicorn", None)

    with pytest.raises(ImportError, match=r"hostedai-harpoon\[emulator\]"), emulator.serve():
        pass


def test_module_on_a_port_in_use_says_so_in_one_line() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "hostedai_harpoon.testing", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )

    assert result.returncode == 1
    assert result.stderr == (
        f"cannot serve the emulator on 127.0.0.1:{port}: the port is already in use\n"
    )
    assert result.stdout == ""


def test_module_on_an_address_it_cannot_bind_says_so_in_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def refuse(host: str, port: int) -> socket.socket:
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("hostedai_harpoon.testing.__main__.bind", refuse)

    status = serve_main(["--host", "0.0.0.0", "--port", "80"])

    assert status == 1
    assert capsys.readouterr().err == "cannot serve the emulator on 0.0.0.0:80: Permission denied\n"


def test_module_help_names_the_emulator_extra(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        serve_main(["--help"])

    assert exited.value.code == 0
    assert "pip install 'hostedai-harpoon[emulator]'" in " ".join(capsys.readouterr().out.split())


def test_module_refuses_impossible_fault_rates_naming_the_options(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert serve_main(["--port", "0", "--error-rate", "0.6", "--drop-rate", "0.6"]) == 2
    assert capsys.readouterr().err == (
        "python -m hostedai_harpoon.testing: error: the fault rates add up to more than 1 "
        "(--error-rate 0.6, --drop-rate 0.6)\n"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--error-rate", "2"], "argument --error-rate: expected a share of requests from 0 to 1"),
        (["--drop-rate", "nan"], "argument --drop-rate: expected a share of requests from 0 to 1"),
        (["--ready-delay", "-1"], "argument --ready-delay: expected a number of seconds from 0"),
        (["--latency-scale", "inf"], "argument --latency-scale: expected a number from 0"),
        (["--stream-chunk-delay", "x"], "argument --stream-chunk-delay: expected a number of "),
    ],
)
def test_module_names_the_option_a_bad_number_was_given_to(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        serve_main(["--port", "0", *args])

    assert exited.value.code == 2
    last = capsys.readouterr().err.splitlines()[-1]
    assert last.startswith(f"python -m hostedai_harpoon.testing: error: {message}")
    assert "_" not in last.split(": error: ")[1].split(",")[0]  # no Python argument names


def test_module_refuses_a_port_out_of_range(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        serve_main(["--port", "70000"])

    assert exited.value.code == 2
    assert "expected a port from 0 to 65535, got '70000'" in capsys.readouterr().err
