"""``examples/service/``: what one caller can hold of the service (a body's size, the time
it takes to send it), and how long the service takes to stop (SIGTERM with requests in
flight: a grace, then every GPU released)."""

from __future__ import annotations

import asyncio
import json
import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass

import httpx
import pytest
from service_guards import MAX_BODY_BYTES, Limits

from hostedai_harpoon.testing import Emulator, Fault, FaultPlan
from tests.examples.serving import API_KEY, SERVICE, served, wait_until

GRACE = 2.0
# What the service may take beyond its grace to stop: answering, closing the Orchestrator,
# releasing the GPUs (a second or two here) on a busy machine.
EXIT_MARGIN = 20.0


def port_of(http: httpx.Client) -> int:
    port = http.base_url.port
    assert port is not None
    return port


def connect(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=15)


def post_head(length: int | None) -> bytes:
    """The head of a ``POST /v2/process``: a ``Content-Length`` or chunked."""
    framing = "Transfer-Encoding: chunked" if length is None else f"Content-Length: {length}"
    head = f"POST /v2/process HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{framing}"
    return f"{head}\r\n\r\n".encode()


def read_to_the_end(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a socket timeout, the
    server keeping the connection open, fails the test)."""
    received = b""
    while chunk := sock.recv(65536):
        received += chunk
    return received


def status_and_error(answer: bytes) -> tuple[int, dict[str, str]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    error: dict[str, str] = json.loads(body)["error"]
    return status, error


# The body: its size and its pace ------------------------------------------------------


@pytest.fixture
def emulator() -> Emulator:
    return Emulator()


def test_a_declared_body_over_the_cap_is_a_413_before_it_is_sent(emulator: Emulator) -> None:
    with served(emulator) as (http, _), connect(port_of(http)) as sock:
        sock.sendall(post_head(50 * 1024 * 1024))
        status, error = status_and_error(read_to_the_end(sock))
    assert (status, error["type"]) == (413, "body_too_large")
    assert error["message"] == f"the body is larger than {MAX_BODY_BYTES} bytes"
    assert emulator.allocations() == []


def test_a_chunked_body_over_the_cap_is_cut_while_it_is_read(emulator: Emulator) -> None:
    with served(emulator) as (http, _), connect(port_of(http)) as sock:
        sock.sendall(post_head(None) + b"%x\r\n%s\r\n" % (MAX_BODY_BYTES, b"x" * MAX_BODY_BYTES))
        sock.sendall(b"1\r\nx\r\n")
        # No last chunk: a service that read the whole body before refusing it would wait.
        status, error = status_and_error(read_to_the_end(sock))
    assert (status, error["type"]) == (413, "body_too_large")
    assert emulator.allocations() == []


def test_a_body_at_the_cap_is_read(emulator: Emulator) -> None:
    text = "word " * ((MAX_BODY_BYTES - len('{"text": ""}')) // 5)
    body = json.dumps({"text": text}).encode()
    assert len(body) <= MAX_BODY_BYTES
    with served(emulator) as (http, _):
        response = http.post("/v2/process", content=body)
    # Read and parsed: too long a text for any deployment's context window.
    assert response.json()["error"]["type"] == "request_too_large"


def test_a_body_sent_too_slowly_is_a_408_and_the_connection_is_closed(
    emulator: Emulator,
) -> None:
    limits = Limits(body_timeout=1.0)
    with served(emulator, limits=limits) as (http, _), connect(port_of(http)) as sock:
        sock.sendall(post_head(1000))
        answer: bytes | None = None
        try:
            # A byte every 300 ms: never idle for long, never done. The service must cut it.
            for _ in range(100):
                sock.sendall(b" ")
                if select.select([sock], [], [], 0.3)[0]:
                    break
            else:
                pytest.fail("the service never cut the body")
            answer = read_to_the_end(sock)
        except (ConnectionResetError, BrokenPipeError):
            pass  # closed as a byte arrived: the kernel's reset may have taken the answer
    if answer is not None:
        status, error = status_and_error(answer)
        assert (status, error["type"]) == (408, "body_timeout")
        assert error["message"] == "the body did not arrive within 1 s"
    assert emulator.allocations() == []


# Stopping: SIGTERM with requests in flight -----------------------------------------------


@dataclass
class ServiceProcess:
    """``harpoon_service.py`` running as a process: the process, its port, what it printed."""

    proc: subprocess.Popen[str]
    port: int
    output: list[str]

    def stop(self) -> None:
        """SIGTERM, and the process gone within the grace and a margin."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=GRACE + EXIT_MARGIN)
        except subprocess.TimeoutExpired:
            pytest.fail(
                f"the service did not stop within {GRACE + EXIT_MARGIN} s of SIGTERM:\n"
                + "".join(self.output[-30:])
            )


@contextmanager
def service_process(base_url: str, *args: str) -> Iterator[ServiceProcess]:
    """``harpoon_service.py`` run as a process against ``base_url`` with a grace of
    ``GRACE`` seconds; killed on the way out if it is still running."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith("HOSTED_AI_")}
    env = {**clean, "HOSTED_AI_BASE_URL": base_url, "HOSTED_AI_API_KEY": API_KEY}
    proc = subprocess.Popen(
        [sys.executable, "harpoon_service.py", "--port", "0", "--grace", str(GRACE), *args],
        cwd=SERVICE,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    output: list[str] = []
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            output.append(line)
            if found := re.search(r"running on http://127\.0\.0\.1:(\d+)", line):
                break
        assert found is not None, "the service did not start:\n" + "".join(output)
        # Keep reading what it prints, or a full pipe would stall it.
        threading.Thread(target=output.extend, args=(proc.stdout,), daemon=True).start()
        yield ServiceProcess(proc, int(found.group(1)), output)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def send_all(port: int, count: int) -> list[int | str]:
    """``count`` concurrent ``POST /v2/process``: each one's status (a 503 only when it is
    ``shutting_down``; other answers in full), or "cut off"."""

    async def one(http: httpx.AsyncClient, i: int) -> int | str:
        text = "Hi" if i % 2 else "Prove that there are infinitely many primes, and explain why."
        try:
            response = await http.post("/v2/process", json={"text": text})
        except httpx.TransportError:
            return "cut off"
        json_answer = response.headers.get("content-type") == "application/json"
        if json_answer and response.json()["error"]["type"] == "shutting_down":
            return response.status_code
        return f"{response.status_code} {response.text[:100]}"

    async def every() -> list[int | str]:
        limits = httpx.Limits(max_connections=count)
        base_url = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(base_url=base_url, timeout=120, limits=limits) as http:
            return await asyncio.gather(*(one(http, i) for i in range(count)))

    return asyncio.run(every())


def inference_calls(emulator: Emulator) -> int:
    return sum(exchange.path == "/v1/inference" for exchange in emulator.exchanges)


@pytest.mark.timeout(120)
def test_sigterm_with_200_requests_in_flight_stops_within_the_grace_releasing_every_gpu() -> None:
    emulator = Emulator(faults=FaultPlan(rules=[Fault("latency", path="/v1/inference", delay=600)]))
    with ExitStack() as stack:
        base_url = stack.enter_context(emulator.serve())
        service = stack.enter_context(service_process(base_url))
        pool = stack.enter_context(ThreadPoolExecutor(1))
        calls: Future[list[int | str]] = pool.submit(send_all, service.port, 200)
        wait_until(lambda: inference_calls(emulator) >= 8, "inference on every GPU")
        service.stop()
        outcomes = calls.result(timeout=60)
        assert emulator.live_allocations() == []
    assert set(outcomes) <= {503, "cut off"}, "".join(service.output[-30:])
    assert 503 in outcomes


@pytest.mark.timeout(120)
def test_sigterm_with_50_stalled_bodies_stops_within_the_grace_releasing_every_gpu() -> None:
    emulator = Emulator(faults=FaultPlan(rules=[Fault("latency", path="/v1/inference", delay=600)]))
    with ExitStack() as stack:
        base_url = stack.enter_context(emulator.serve())
        # A body timeout well past the grace: the grace must cut the stalled bodies.
        service = stack.enter_context(service_process(base_url, "--body-timeout", "600"))
        stalled = [stack.enter_context(connect(service.port)) for _ in range(50)]
        for sock in stalled:
            sock.sendall(post_head(1000) + b'{"text": ')
        pool = stack.enter_context(ThreadPoolExecutor(1))
        calls: Future[list[int | str]] = pool.submit(send_all, service.port, 4)
        wait_until(lambda: inference_calls(emulator) >= 1, "a request holding a GPU")
        service.stop()
        answers = [read_to_the_end(sock) for sock in stalled]
        outcomes = calls.result(timeout=60)
        assert emulator.live_allocations() == []
    assert set(outcomes) <= {503, "cut off"}
    for answer in answers:
        status, error = status_and_error(answer)
        assert (status, error["type"]) == (503, "shutting_down")
