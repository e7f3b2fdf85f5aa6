"""The emulator as a raw ASGI 3 application (no framework), for uvicorn or any ASGI server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from ._wire import EventStream, Handler, Request

__all__ = ["ConnectionDropped", "EmulatorApp", "quiet_dropped_connections"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

# A header value the server's HTTP layer refuses: sending it makes the server give up on the
# response before a byte is written, and close the connection, like a real dropped line.
_UNSENDABLE_HEADER = (b"x-emulator-drop", b"\n")


class ConnectionDropped(Exception):
    """Raised by the app to make the server close the connection without an answer."""


class _DropFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], ConnectionDropped))


_DROP_FILTER = _DropFilter()


def quiet_dropped_connections() -> None:
    """Keep uvicorn from logging injected dropped connections as application errors."""
    logging.getLogger("uvicorn.error").addFilter(_DROP_FILTER)


class _ClientGone(Exception):
    pass


class EmulatorApp:
    """An ASGI 3 application answering every HTTP request from an emulator.

    A server shutting down calls :meth:`drop_open_responses` (the emulator's own servers
    do): an answer still waiting out its delay, or a stream still being sent, is then cut
    like a dropped connection, as is one whose task the server cancels.
    """

    def __init__(self, emulator: Handler) -> None:
        self.emulator = emulator
        self._cutting: set[asyncio.Future[None]] = set()

    def drop_open_responses(self) -> None:
        """Cut every answer in flight (call it on the server's event loop)."""
        for cut in list(self._cutting):
            if not cut.done():
                cut.set_result(None)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Serve one ASGI connection scope."""
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            body = await _read_body(receive)
        except _ClientGone:
            return
        reply = self.emulator.handle(
            Request(
                method=scope["method"],
                path=scope["path"],
                query=scope["query_string"].decode("latin-1"),
                headers={
                    name.decode("latin-1").lower(): value.decode("latin-1")
                    for name, value in scope["headers"]
                },
                body=body,
            )
        )
        disconnected = asyncio.ensure_future(_wait_for_disconnect(receive))
        cut = asyncio.get_running_loop().create_future()
        self._cutting.add(cut)
        started = False
        try:
            if await _client_gone({disconnected, cut}, reply.delay):
                if _cut_off(cut, disconnected):
                    raise _Cut
                return
            if reply.status is None:
                await _drop(send)
            headers = [(name.encode(), value.encode()) for name, value in reply.headers.items()]
            started = True
            await send({"type": "http.response.start", "status": reply.status, "headers": headers})
            if reply.stream is None:
                await send({"type": "http.response.body", "body": reply.body})
            elif not await _stream(reply.stream, {disconnected, cut}, send) and _cut_off(
                cut, disconnected
            ):
                raise _Cut
        except (_Cut, asyncio.CancelledError):
            # The server is going away: the answer is lost, as on a dropped line.
            if not started and reply.on_lost is not None:
                reply.on_lost()
            await _drop(send, started=started)
        finally:
            self._cutting.discard(cut)
            disconnected.cancel()
            if reply.stream is not None:
                reply.stream.close()


class _Cut(Exception):
    pass


def _cut_off(cut: asyncio.Future[None], disconnected: asyncio.Future[None]) -> bool:
    """Whether the server cut the answer while the client was still there."""
    return cut.done() and not disconnected.done()


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _drop(send: Send, *, started: bool = False) -> None:
    if not started:
        with contextlib.suppress(Exception):
            await send(
                {"type": "http.response.start", "status": 200, "headers": [_UNSENDABLE_HEADER]}
            )
    raise ConnectionDropped("injected dropped connection")


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _client_gone(ends: set[asyncio.Future[None]], wait: float = 0.0) -> bool:
    """Whether one of ``ends`` happened, waiting up to ``wait`` seconds for it."""
    if wait:
        await asyncio.wait(ends, timeout=wait, return_when=asyncio.FIRST_COMPLETED)
    return any(end.done() for end in ends)


async def _stream(events: EventStream, ends: set[asyncio.Future[None]], send: Send) -> bool:
    """Send the events one by one; whether they all went before one of ``ends`` happened."""
    pause = 0.0
    while not await _client_gone(ends, pause):
        chunk = next(events, None)
        if chunk is None:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return True
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        pause = events.delay
    return False


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
