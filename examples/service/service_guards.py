"""What keeps one caller, or one stop, from holding the service: the error envelope, the
request body's cap and read timeout, and the grace on stopping (with the uvicorn server
that starts it). Nothing here knows about GPUs; ``harpoon_service.py`` uses it."""

from __future__ import annotations

import asyncio
import math
import re
import socket
import uuid
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import uvicorn
from starlette.applications import Starlette
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse

T = TypeVar("T")

MAX_BODY_BYTES = 1 << 20
BODY_TIMEOUT = 10.0
GRACE = 10.0
# uvicorn's own cut, this long after the grace: for a connection the service no longer
# answers on (a client that does not read its response).
BACKSTOP = 5.0


@dataclass(frozen=True)
class Failure:
    """What the service answers for an error: status, snake_case type, fixed message."""

    status: int
    kind: str
    message: str


class Refusal(Exception):
    """A request the service answers with an error of its own (a bad body, say)."""

    def __init__(self, status: int, kind: str, message: str, *, close: bool = False) -> None:
        super().__init__(message)
        self.failure = Failure(status, kind, message)
        self.close = close  # the connection too: the rest of the body is not worth reading


def bad_request(message: str) -> Refusal:
    return Refusal(400, "bad_request", message)


def shutting_down() -> Refusal:
    return Refusal(503, "shutting_down", "the service is shutting down; try again", close=True)


def new_request_id() -> str:
    """The service's own id for a request: in its answer and in its log."""
    return f"svc_{uuid.uuid4().hex[:20]}"


def error_response(
    failure: Failure,
    request_id: str,
    *,
    close: bool = False,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    """The service's error envelope; ``close`` ends the connection after it."""
    body = {"type": failure.kind, "message": failure.message, "request_id": request_id}
    response = JSONResponse({"error": body}, failure.status, headers=dict(headers or {}))
    response.headers["x-request-id"] = request_id
    if close:
        response.headers["connection"] = "close"
    return response


_BEARER = re.compile(r"(?i)bearer\s+[^\s'\",;]+")


def masked(text: str, secrets: Iterable[str]) -> str:
    """``text`` fit for the log: each of ``secrets`` and every ``Bearer`` token masked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return _BEARER.sub("Bearer ***", text)


@dataclass(frozen=True)
class Limits:
    """How much of a request body the service reads, and for how long."""

    max_body_bytes: int = MAX_BODY_BYTES
    body_timeout: float = BODY_TIMEOUT


class Shutdown:
    """The grace the requests in flight get once the server stops, and the cut at its end.

    :meth:`begin` (called by :class:`Server` as it stops taking connections) starts it.
    A body being read is cut at the grace's end (or its own timeout); a call run through
    :meth:`call` is answered then, while it unwinds (releasing what it holds) on its own.
    """

    def __init__(self, grace: float) -> None:
        self.grace = grace
        self.stopping = False
        self._at: float | None = None
        self._reads: set[asyncio.Timeout] = set()
        self._calls: set[asyncio.Task[Any]] = set()
        self._cut: asyncio.Future[None] | None = None

    def begin(self) -> None:
        """Start the grace."""
        loop = asyncio.get_running_loop()
        self.stopping = True
        self._at = loop.time() + self.grace
        for timeout in self._reads:
            self._tighten(timeout)
        loop.call_at(self._at, self._end_grace)

    def _end_grace(self) -> None:
        cut = self._cut_future()
        if not cut.done():
            cut.set_result(None)

    def _cut_future(self) -> asyncio.Future[None]:
        if self._cut is None:
            self._cut = asyncio.get_running_loop().create_future()
        return self._cut

    def _tighten(self, timeout: asyncio.Timeout) -> None:
        when = timeout.when()
        if self._at is not None and (when is None or self._at < when):
            timeout.reschedule(self._at)

    async def read_body(self, request: Request, limits: Limits) -> bytes:
        """The request's body, refused past ``max_body_bytes`` or ``body_timeout`` while
        it is read (a slow sender holds a connection no longer than that)."""
        cap = limits.max_body_bytes
        too_big = Refusal(413, "body_too_large", f"the body is larger than {cap} bytes", close=True)
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > cap:
            raise too_big
        when = asyncio.get_running_loop().time() + limits.body_timeout
        body = bytearray()
        try:
            async with asyncio.timeout_at(when) as timeout:
                self._tighten(timeout)
                self._reads.add(timeout)
                try:
                    async for chunk in request.stream():
                        body += chunk
                        if len(body) > cap:
                            raise too_big
                finally:
                    self._reads.discard(timeout)
        except TimeoutError:
            if not timeout.expired():
                raise
            if self.stopping:
                raise shutting_down() from None
            message = f"the body did not arrive within {limits.body_timeout:g} s"
            raise Refusal(408, "body_timeout", message, close=True) from None
        except ClientDisconnect:
            raise bad_request("the client went away before sending the whole body") from None
        return bytes(body)

    async def call(self, work: Coroutine[Any, Any, T]) -> T:
        """``work``'s result, or ``shutting_down()`` once the grace is over: then ``work``
        is cancelled and left to unwind (see :meth:`settle`)."""
        task = asyncio.create_task(work)
        self._calls.add(task)
        task.add_done_callback(_settled)
        task.add_done_callback(self._calls.discard)
        either: set[asyncio.Future[Any]] = {task, self._cut_future()}
        try:
            await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            task.cancel()
            raise
        if task.done():
            return task.result()
        task.cancel()
        raise shutting_down()

    async def settle(self) -> None:
        """Wait (``BACKSTOP`` seconds at most) for the calls cut at the grace's end."""
        if self._calls:
            await asyncio.wait(set(self._calls), timeout=BACKSTOP)


def _settled(task: asyncio.Task[Any]) -> None:
    """Retrieve a cut call's outcome: it was answered already."""
    if not task.cancelled():
        task.exception()


class Server(uvicorn.Server):
    """uvicorn's server for an app with a :class:`Shutdown` in ``app.state.shutdown``: it
    starts the grace when it stops taking connections, and cuts what is left ``BACKSTOP``
    seconds after it."""

    def __init__(self, app: Starlette, host: str, port: int, **options: Any) -> None:
        self.app_shutdown: Shutdown = app.state.shutdown
        backstop = math.ceil(self.app_shutdown.grace + BACKSTOP)
        config = uvicorn.Config(
            app, host=host, port=port, timeout_graceful_shutdown=backstop, **options
        )
        super().__init__(config)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Start the grace, then let uvicorn wait for the connections (and stop the app)."""
        self.app_shutdown.begin()
        await super().shutdown(sockets)
