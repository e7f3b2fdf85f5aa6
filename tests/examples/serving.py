"""Serving the example service (and stand-ins for its upstream) on 127.0.0.1 for the tests."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from harpoon_service import create_app
from service_guards import Limits, Server

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator

SERVICE = Path(__file__).resolve().parent.parent.parent / "examples" / "service"
API_KEY = "test-key-d41d8cd98f00b204"
FAST_RETRIES = harpoon.RetryPolicy(max_retries=1, initial_backoff=0.001, max_backoff=0.002)


@contextmanager
def running(server: uvicorn.Server) -> Iterator[int]:
    """``server`` run in a thread while the block runs; yields its port."""
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert thread.is_alive(), "the server did not start"
        assert time.monotonic() < deadline, "the server did not start in time"
        time.sleep(0.01)
    try:
        yield server.servers[0].sockets[0].getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(20)
        assert not thread.is_alive(), "the server did not stop"


@contextmanager
def served(
    upstream: Emulator | str, grace: float = 10.0, limits: Limits | None = None
) -> Iterator[tuple[httpx.Client, uvicorn.Server]]:
    """The service on a free port of 127.0.0.1, with its GPUs on ``upstream`` (an emulator
    in process, or the base URL of a server over TCP); an HTTP client for it, and the
    server (to stop it early)."""
    client = harpoon.AsyncHostedAI(
        upstream if isinstance(upstream, str) else "http://127.0.0.1:8080",
        API_KEY,
        http_client=None if isinstance(upstream, str) else upstream.async_http_client(),
        retry=FAST_RETRIES,
    )
    app = create_app(client, grace=grace, limits=limits)
    server = Server(app, "127.0.0.1", 0, log_level="warning", lifespan="on")
    with running(server) as port:
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=20)
        with http:
            yield http, server


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """Any ASGI ``app`` on a free port of 127.0.0.1; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    with running(uvicorn.Server(config)) as port:
        yield f"http://127.0.0.1:{port}"


def wait_until(condition: Callable[[], bool], what: str, polls: int = 2_000) -> None:
    """Poll ``condition`` every 10 ms, at most ``polls`` times."""
    for _ in range(polls):
        if condition():
            return
        time.sleep(0.01)
    raise AssertionError(f"never happened: {what}")
