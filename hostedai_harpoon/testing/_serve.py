"""Serving the emulator over real TCP with uvicorn (an optional dependency, imported lazily)."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from ._asgi import quiet_dropped_connections

if TYPE_CHECKING:
    import uvicorn

__all__ = ["UVICORN_MISSING", "bind", "make_server", "serve_in_thread"]

UVICORN_MISSING = "serving the emulator needs uvicorn: pip install 'hostedai-harpoon[emulator]'"
"""What to say when uvicorn is not installed."""

_START_TIMEOUT = 10.0
_STOP_TIMEOUT = 5.0


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket (``port=0``: a free port), so the port is known before serving."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto must say TCP: asyncio turns on TCP_NODELAY only for sockets that do, and without
    # it every answer (headers and body written apart) waits out a 40 ms delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    return sock


def base_url(sock: socket.socket) -> str:
    """The ``http://host:port`` a bound socket serves on."""
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def make_server(app: Any) -> uvicorn.Server:
    """A quiet uvicorn server for ``app``: warnings only, no access log, no lifespan.

    On shutdown it first cuts the answers ``app`` still has in flight (when ``app`` has a
    ``drop_open_responses`` method, as :class:`EmulatorApp` does), so it stops at once.

    Raises ``ImportError`` (its ``name`` is ``"uvicorn"``) when uvicorn is not installed.
    """
    try:
        import uvicorn
    except ModuleNotFoundError as exc:
        if exc.name != "uvicorn":
            raise
        raise ImportError(UVICORN_MISSING, name="uvicorn") from exc
    quiet_dropped_connections()
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
    )

    class Server(uvicorn.Server):
        async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
            # Answers still delayed and streams still open would hold the shutdown up to
            # its timeout, and then be cancelled with a traceback: cut them now instead.
            drop_open_responses = getattr(app, "drop_open_responses", None)
            if drop_open_responses is not None:
                drop_open_responses()
            await super().shutdown(sockets)

    return Server(config)


@contextlib.contextmanager
def serve_in_thread(
    app: Any, host: str, port: int, also: Sequence[socket.socket] = ()
) -> Iterator[str]:
    """Serve ``app`` in a background thread while the block runs; yields the base URL.
    ``also``: more listening sockets the same server answers on (the caller closes them)."""
    server = make_server(app)
    sock = bind(host, port)
    thread = threading.Thread(
        target=server.run,
        kwargs={"sockets": [sock, *also]},
        name="hostedai-emulator",
        daemon=True,
    )
    thread.start()
    try:
        deadline = time.monotonic() + _START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the emulator server did not start")
            time.sleep(0.005)
        yield base_url(sock)
    finally:
        server.should_exit = True
        thread.join(_STOP_TIMEOUT)
        sock.close()
