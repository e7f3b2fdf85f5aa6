"""The emulator as a raw ASGI 3 application (no framework), for uvicorn or any ASGI server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from ._wire import EventStream, Request

if TYPE_CHECKING:
    from ._emulator import Emulator

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
    """An ASGI 3 application answering every HTTP request from an emulator."""

    def __init__(self, emulator: Emulator) -> None:
        self.emulator = emulator

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
        try:
            if await _client_gone(disconnected, reply.delay):
                return
            if reply.status is None:
                await _drop(send)
            headers = [(name.encode(), value.encode()) for name, value in reply.headers.items()]
            await send({"type": "http.response.start", "status": reply.status, "headers": headers})
            if reply.stream is None:
                await send({"type": "http.response.body", "body": reply.body})
            else:
                await _stream(reply.stream, disconnected, send)
        finally:
            disconnected.cancel()
            if reply.stream is not None:
                reply.stream.close()


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _ClientGone
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)


async def _drop(send: Send) -> None:
    with contextlib.suppress(Exception):
        await send({"type": "http.response.start", "status": 200, "headers": [_UNSENDABLE_HEADER]})
    raise ConnectionDropped("injected dropped connection")


async def _wait_for_disconnect(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _client_gone(disconnected: asyncio.Future[None], wait: float = 0.0) -> bool:
    """Whether the client disconnected, waiting up to ``wait`` seconds for it to happen."""
    if wait:
        await asyncio.wait({disconnected}, timeout=wait)
    return disconnected.done()


async def _stream(events: EventStream, disconnected: asyncio.Future[None], send: Send) -> None:
    """Send the events one by one, until the end or until the client is gone."""
    pause = 0.0
    while not await _client_gone(disconnected, pause):
        chunk = next(events, None)
        if chunk is None:
            await send({"type": "http.response.body", "body": b"", "more_body": False})
            return
        await send({"type": "http.response.body", "body": chunk, "more_body": True})
        pause = events.delay


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
