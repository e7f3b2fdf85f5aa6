"""httpx transports that hand requests straight to an emulator: no sockets, same behaviour."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator

import httpx

from ._wire import EventStream, Handler, Reply, Request

__all__ = ["AsyncEmulatorTransport", "EmulatorTransport"]


def _to_request(request: httpx.Request, body: bytes) -> Request:
    return Request(
        method=request.method,
        path=request.url.path,
        query=request.url.query.decode("ascii"),
        headers={name.lower(): value for name, value in request.headers.multi_items()},
        body=body,
    )


def _read_timeout(request: httpx.Request) -> float | None:
    timeout: float | None = request.extensions.get("timeout", {}).get("read")
    return timeout


def _wait_time(reply: Reply, request: httpx.Request) -> tuple[float, bool]:
    """How long to wait before answering, and whether the client's read timeout hits first."""
    timeout = _read_timeout(request)
    if timeout is not None and reply.delay > timeout:
        return timeout, True
    return reply.delay, False


def _timed_out(reply: Reply, request: httpx.Request) -> httpx.ReadTimeout:
    if reply.stream is not None:
        reply.stream.close()
    return httpx.ReadTimeout("timed out", request=request)


def _to_response(
    reply: Reply,
    request: httpx.Request,
    stream: httpx.SyncByteStream | httpx.AsyncByteStream | None,
) -> httpx.Response:
    if reply.status is None:
        raise httpx.RemoteProtocolError(
            "Server disconnected without sending a response.", request=request
        )
    if stream is None:
        return httpx.Response(reply.status, headers=reply.headers, content=reply.body)
    return httpx.Response(reply.status, headers=reply.headers, stream=stream)


class _EventByteStream(httpx.SyncByteStream):
    def __init__(self, events: EventStream) -> None:
        self._events = events

    def __iter__(self) -> Iterator[bytes]:
        pause = 0.0
        while True:
            if pause:
                time.sleep(pause)
            chunk = next(self._events, None)
            if chunk is None:
                return
            yield chunk
            pause = self._events.delay

    def close(self) -> None:
        self._events.close()


class _AsyncEventByteStream(httpx.AsyncByteStream):
    def __init__(self, events: EventStream) -> None:
        self._events = events

    async def __aiter__(self) -> AsyncIterator[bytes]:
        pause = 0.0
        while True:
            if pause:
                await asyncio.sleep(pause)
            chunk = next(self._events, None)
            if chunk is None:
                return
            yield chunk
            pause = self._events.delay

    async def aclose(self) -> None:
        self._events.close()


class EmulatorTransport(httpx.BaseTransport):
    """Sends each request to an :class:`Emulator` in-process.

    Injected latency really sleeps; when it exceeds the request's read timeout the call
    raises ``httpx.ReadTimeout`` after that timeout, and a dropped connection raises
    ``httpx.RemoteProtocolError``, as over a network.
    """

    def __init__(self, emulator: Handler) -> None:
        self._emulator = emulator

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` from the emulator."""
        reply = self._emulator.handle(_to_request(request, request.read()))
        wait, timed_out = _wait_time(reply, request)
        if wait:
            time.sleep(wait)
        if timed_out:
            raise _timed_out(reply, request)
        stream = None if reply.stream is None else _EventByteStream(reply.stream)
        return _to_response(reply, request, stream)


class AsyncEmulatorTransport(httpx.AsyncBaseTransport):
    """Sends each request to an :class:`Emulator` in-process, for ``httpx.AsyncClient``.

    Behaves like :class:`EmulatorTransport`, sleeping with ``asyncio.sleep``.
    """

    def __init__(self, emulator: Handler) -> None:
        self._emulator = emulator

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        """Answer ``request`` from the emulator."""
        reply = self._emulator.handle(_to_request(request, await request.aread()))
        wait, timed_out = _wait_time(reply, request)
        # Always give the event loop a turn, as a socket would: without one, tasks cancelled
        # meanwhile (a finished lease's keepalive) never get to end in a tight loop of calls.
        await asyncio.sleep(wait)
        if timed_out:
            raise _timed_out(reply, request)
        stream = None if reply.stream is None else _AsyncEventByteStream(reply.stream)
        return _to_response(reply, request, stream)
