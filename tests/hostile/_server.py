"""A small raw HTTP/1.1 server on 127.0.0.1 that answers every request with one hostile body.

The first path segment picks the behaviour (the client's ``base_url`` ends with it, so any
SDK call lands on it): ``/huge/...`` a 200 MB chunked JSON body, ``/bomb/...`` a gzip bomb,
``/endless/...`` a chunked body that never ends, ``/dribble-body/...`` a body sent a byte
every ``DRIBBLE`` seconds, ``/dribble-headers/...`` the same for the status line and headers,
``/sse-line/...`` an event stream whose first line is 200 MB long, ``/sse-keepalive/...`` an
event stream of nothing but comment lines, ``/slow/...`` a valid JSON answer after 0.05 s.

Everything is generated as it is sent: the server itself stays small whatever it sends.
"""

from __future__ import annotations

import socket
import socketserver
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress

DRIBBLE = 0.5
HUGE_BYTES = 200 * 1024 * 1024
BOMB_BYTES = 512 * 1024 * 1024
_BLOCK = 64 * 1024


def _gzip_bomb(size: int) -> bytes:
    """``size`` zero bytes gzipped (about a thousandth of ``size``), built a block at a time."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    block = bytes(1024 * 1024)
    parts = [packer.compress(block) for _ in range(size // len(block))]
    parts.append(packer.flush())
    return b"".join(parts)


_bomb: bytes | None = None
_bomb_lock = threading.Lock()


def gzip_bomb() -> bytes:
    """The bomb the ``/bomb`` route sends, made once per process."""
    global _bomb
    with _bomb_lock:
        if _bomb is None:
            _bomb = _gzip_bomb(BOMB_BYTES)
        return _bomb


def _head(status: str, headers: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status}", *(f"{k}: {v}" for k, v in headers.items()), "", ""]
    return "\r\n".join(lines).encode()


def _chunk(data: bytes) -> bytes:
    return b"%x\r\n%s\r\n" % (len(data), data)


def _huge() -> Iterator[bytes]:
    yield _head("200 OK", {"content-type": "application/json", "transfer-encoding": "chunked"})
    yield _chunk(b'{"status": "')
    block = _chunk(b"x" * _BLOCK)
    for _ in range(HUGE_BYTES // _BLOCK):
        yield block
    yield _chunk(b'"}') + b"0\r\n\r\n"


def _bomb_route() -> Iterator[bytes]:
    body = gzip_bomb()
    yield _head(
        "200 OK",
        {
            "content-type": "application/json",
            "content-encoding": "gzip",
            "content-length": str(len(body)),
        },
    )
    for start in range(0, len(body), _BLOCK):
        yield body[start : start + _BLOCK]


def _endless() -> Iterator[bytes]:
    yield _head("200 OK", {"content-type": "application/json", "transfer-encoding": "chunked"})
    block = _chunk(b"x" * _BLOCK)
    while True:
        yield block


def _dribble_body() -> Iterator[bytes]:
    yield _head("200 OK", {"content-type": "application/json", "content-length": "1000"})
    for _ in range(1000):
        time.sleep(DRIBBLE)
        yield b" "


def _dribble_headers() -> Iterator[bytes]:
    head = _head("200 OK", {"content-type": "application/json", "x-padding": "p" * 1000})
    for byte in head:
        time.sleep(DRIBBLE)
        yield bytes([byte])


def _sse_head() -> bytes:
    return _head("200 OK", {"content-type": "text/event-stream", "transfer-encoding": "chunked"})


def _sse_line() -> Iterator[bytes]:
    yield _sse_head()
    yield _chunk(b"data: ")
    block = _chunk(b"x" * _BLOCK)
    for _ in range(HUGE_BYTES // _BLOCK):
        yield block
    yield _chunk(b"\n\n") + b"0\r\n\r\n"


def _sse_keepalive() -> Iterator[bytes]:
    yield _sse_head()
    while True:
        yield _chunk(b": keepalive\n")
        time.sleep(0.2)


def _slow() -> Iterator[bytes]:
    time.sleep(0.05)
    body = b'{"status": "ok", "version": "hostile"}'
    yield _head("200 OK", {"content-type": "application/json", "content-length": str(len(body))})
    yield body


ROUTES: dict[str, Callable[[], Iterator[bytes]]] = {
    "huge": _huge,
    "bomb": _bomb_route,
    "endless": _endless,
    "dribble-body": _dribble_body,
    "dribble-headers": _dribble_headers,
    "sse-line": _sse_line,
    "sse-keepalive": _sse_keepalive,
    "slow": _slow,
}


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        sock: socket.socket = self.request
        with suppress(OSError):  # the client hanging up mid-body is the point of most routes
            while self._answer_one(sock):
                pass

    def _answer_one(self, sock: socket.socket) -> bool:
        data = b""
        while b"\r\n\r\n" not in data:
            more = sock.recv(65536)
            if not more:
                return False
            data += more
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        while len(rest) < length:
            more = sock.recv(65536)
            if not more:
                return False
            rest += more
        route = lines[0].split(" ")[1].split("/")[1]
        for piece in ROUTES[route]():
            sock.sendall(piece)
        return True


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


@contextmanager
def serve() -> Iterator[str]:
    """Run the server on a free port of 127.0.0.1; yields its base URL."""
    server = _Server(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
