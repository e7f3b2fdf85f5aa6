"""A hostile hosted·ai platform: the ``gpuaas`` emulator behind a front that answers one of
the platform's operations with a hostile answer, and every other request as the emulator does.

The operation still happens when the attack is ``made`` (the emulator is asked first, then
its answer is thrown away): a subscribe that worked, answered with garbage. Otherwise the
hostile answer replaces it (the platform refused, in its own hostile way).

Two fronts: ``Hostile``, an httpx transport (in-process, sync and async) for answers that
are small (malformed, wrong-typed, key-echoing bodies, the platform's quirks); ``serve``, a
raw HTTP/1.1 server on 127.0.0.1 that sends the ``_server`` routes (huge, compressed,
endless and dribbled bodies, dribbled headers, endless event streams) for the attacked
operation, for the child process whose memory and time are measured.
"""

from __future__ import annotations

import json
import socket
import socketserver
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from fnmatch import fnmatchcase
from typing import Any

import httpx

from hostedai_harpoon.testing import Emulator
from tests.dialects import TEAM
from tests.hostile import _server

OPERATIONS: dict[str, tuple[str, str]] = {
    "pools": ("GET", "/api/gpuaas/available-pools"),
    "subscribe": ("POST", "/api/gpuaas/pool/subscribe"),
    "list": ("GET", "/api/gpuaas/pool-subscription"),
    "connection": ("GET", "/api/gpuaas/connection-info"),
    "expose": ("POST", "/api/pods/expose-service"),
    "unsubscribe": ("POST", "/api/gpuaas/pool/unsubscribe"),
    "pod": ("POST", "/v1/chat/completions"),  # the subscribed pod's vLLM server
}
"""What a lease sends on the platform, by the name an attack gives it. (The reference
application's ``GET /instances/unified/{id}/exposed-services`` is not among them: the client
reads a subscription's services from connection-info, so it never asks that path.)"""


def sent_key(request: httpx.Request) -> str:
    """The credential the request carries, whichever header it is in."""
    return str(request.headers.get("x-api-key") or request.headers.get("authorization", ""))


def _json(status: int, body: object, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(), headers=_JSON | headers)


_JSON = {"content-type": "application/json", "x-request-id": "req_hostile"}
_POLICY = {"code": 12370004, "message": "unable to retrieve resource access permissions"}
_NO_CAPACITY = {"code": 10189007, "message": "Insufficient resources"}
# One row wrong in every field an operation reads, under every key any of them reads.
_WRONG_ROW = {
    "id": [1],
    "team_id": TEAM,
    "pool_id": None,
    "status": 5,
    "pods": [{"pod_name": 7, "pod_status": True, "discovered_services": "x"}],
    "available_vgpus": "8",
    "subscription_id": {"id": 1},
    "ip": [],
    "node_port": 1e3,
    "choices": "none",
}

Answer = Callable[[httpx.Request], httpx.Response]

ANSWERS: dict[str, Answer] = {
    "malformed": lambda r: httpx.Response(200, content=b'{"items": [{"id": 10', headers=_JSON),
    "html-502": lambda r: httpx.Response(
        502, content=b"<html><body>Bad gateway</body></html>", headers={"content-type": "text/html"}
    ),
    "wrong-shape": lambda r: _json(200, {"items": {"id": 1}, **_WRONG_ROW}),
    "wrong-rows": lambda r: _json(200, [_WRONG_ROW]),
    "empty-200": lambda r: httpx.Response(200, headers=_JSON),
    "code-only-200": lambda r: _json(200, {"code": 12370004}),
    "policy-200": lambda r: _json(200, _POLICY),
    "policy-500": lambda r: _json(500, _POLICY),
    "no-capacity-200": lambda r: _json(
        200, {"code": 10189007, "message": "Insufficient resources"}
    ),
    # The key repeated back: in the message, the field errors, the headers.
    "echo-200": lambda r: _json(
        200, {"code": 12370004, "message": f"key {sent_key(r)} has no access"}
    ),
    "echo-500": lambda r: _json(
        500,
        {"code": 12370004, "message": f"key {sent_key(r)} has no access", "you_sent": sent_key(r)},
        **{"x-request-id": sent_key(r), "www-authenticate": f"ApiKey {sent_key(r)}"},
    ),
    "echo-422": lambda r: _json(
        422, {"errors": [{"field": "x-api-key", "message": f"{sent_key(r)} is not valid"}]}
    ),
    "echo-401": lambda r: _json(401, {"error": f"Unauthorized: {sent_key(r)}"}),
}


def matches(operation: str, method: str, path: str) -> bool:
    """Whether a request of ``method`` to ``path`` is ``operation``."""
    wanted_method, glob = OPERATIONS[operation]
    return method == wanted_method and fnmatchcase(path, glob)


class Hostile(httpx.BaseTransport, httpx.AsyncBaseTransport):
    """The emulator's in-process transport with ``operation`` answered by ``answer``
    (after the emulator did it, when ``made``). ``armed`` off: the emulator only."""

    def __init__(self, emu: Emulator, operation: str, answer: Answer, *, made: bool) -> None:
        self._sync = emu.transport()
        self._async = emu.async_transport()
        self.operation, self.answer, self.made = operation, answer, made
        self.armed = True
        self.attacks = 0
        self.requests = 0

    def _hits(self, request: httpx.Request) -> bool:
        self.requests += 1
        hit = self.armed and matches(self.operation, request.method, request.url.path)
        self.attacks += hit
        return hit

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if not self._hits(request):
            return self._sync.handle_request(request)
        if self.made:
            self._sync.handle_request(request).close()
        return self.answer(request)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if not self._hits(request):
            return await self._async.handle_async_request(request)
        if self.made:
            await (await self._async.handle_async_request(request)).aclose()
        return self.answer(request)


# Over TCP -----------------------------------------------------------------------------


class _Front(socketserver.BaseRequestHandler):
    server: _FrontServer

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
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = dict(line.split(":", 1) for line in lines[1:])
        headers = {name.strip().lower(): value.strip() for name, value in headers.items()}
        length = int(headers.get("content-length", 0))
        while len(body) < length:
            more = sock.recv(65536)
            if not more:
                return False
            body += more
        front = self.server
        request = httpx.Request(method, f"http://emulator.local{target}", content=body)
        request.headers.update({k: v for k, v in headers.items() if k not in _HOP})
        if matches(front.operation, method, request.url.path):
            if front.made:
                front.transport.handle_request(request).close()
            for piece in _server.ROUTES[front.route]():
                sock.sendall(piece)
            return True
        response = front.transport.handle_request(request)
        content = response.read()
        shown = {k: v for k, v in response.headers.items() if k.lower() not in _HOP}
        shown["content-length"] = str(len(content))
        status = f"{response.status_code} {response.reason_phrase}"
        sock.sendall(_server._head(status, shown) + content)
        return True


_HOP = frozenset({"content-length", "transfer-encoding", "connection", "host", "content-encoding"})


class _FrontServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, emu: Emulator, operation: str, route: str, made: bool) -> None:
        super().__init__(("127.0.0.1", 0), _Front)
        self.transport = emu.transport()
        self.operation, self.route, self.made = operation, route, made


@contextmanager
def serve(emu: Emulator, operation: str, route: str, *, made: bool = True) -> Iterator[str]:
    """The platform of ``emu`` on a free port of 127.0.0.1, ``operation`` answered with the
    ``_server`` route ``route``; yields its base URL (the pods' services are served there)."""
    server = _FrontServer(emu, operation, route, made)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    platform: Any = emu._gpuaas  # (where the emulator says the pods' services are)
    platform.endpoint_base = url
    try:
        yield url
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
