"""The drivers: the only code that does the I/O a flow asks for.

A flow (a call's plan, or a lease flow built of plans) yields ``Send`` and ``Sleep`` steps;
``SyncDriver`` carries them out with ``httpx.Client`` and the clock's ``sleep``,
``AsyncDriver`` with ``httpx.AsyncClient`` and ``async_sleep``. An error from reading an
answer (too large, undecodable) is thrown back into the flow, which decides what it means.
Nothing else differs between the twins.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, TypeVar

import attrs
import httpx

from .._exceptions import HostedAIError
from . import _clock
from ._body import Body, clip_reads
from ._errors import closed_error, deadline_passed, undecodable
from ._steps import Flow, Reply, Send, SendOutcome, Sleep

__all__ = ["AsyncDriver", "SyncDriver"]

T = TypeVar("T")


def _sleep(seconds: float) -> bool:
    _clock.sleep(seconds)
    return True


@attrs.frozen
class SyncDriver:
    """Carries out flows with an ``httpx.Client``."""

    http: httpx.Client
    max_response_bytes: int

    def run(self, flow: Flow[T], sleep: Callable[[float], bool] = _sleep) -> T:
        """Run ``flow`` to its end and return its value; ``sleep`` returning False ends it
        early (with ``None``: a keepalive that was told to stop)."""
        outcome: SendOutcome = None
        failure: HostedAIError | None = None
        try:
            while True:
                step = flow.send(outcome) if failure is None else flow.throw(failure)
                outcome, failure = None, None
                if type(step) is Sleep:
                    if not sleep(step.seconds):
                        return None  # type: ignore[return-value]
                    continue
                assert type(step) is Send
                try:
                    outcome = self.send(step)
                except HostedAIError as exc:  # the flow decides what each failure means
                    failure = exc
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            flow.close()

    def send(self, step: Send) -> Reply | httpx.TransportError:
        """One attempt: send, then read the body within its bounds and the deadline."""
        if self.http.is_closed:
            raise closed_error()
        if step.deadline_at is None:
            return self._exchange(step)
        progress = _Progress(self.http)
        step.request.extensions["trace"] = progress.see
        return _by_the_deadline(self._exchange, step, step.deadline_at, progress)

    def _exchange(self, step: Send) -> Reply | httpx.TransportError:
        try:
            response = self.http.send(step.request, stream=True)
        except httpx.TransportError as exc:
            return exc
        if step.stream and response.status_code < 300:
            return Reply(response, b"")
        deadline_at = step.deadline_at
        try:
            body = Body(response, self.max_response_bytes)
            if body.loaded is not None:
                return Reply(response, body.loaded)
            if deadline_at is not None:
                clip_reads(step.request, deadline_at)
            for chunk in response.iter_raw() if body.decoding.raw else response.iter_bytes():
                body.feed(chunk)
                if deadline_at is not None and _clock.monotonic() >= deadline_at:
                    return deadline_passed(step.request)
            return Reply(response, body.finish())
        except httpx.TransportError as exc:
            return exc
        except httpx.DecodingError as exc:
            raise undecodable(response, exc) from None
        finally:
            response.close()


class _Progress:
    """How far an attempt got, from httpcore's ``trace`` events: whether it began to connect
    and whether its headers went out. Read only for transports that emit them (httpx's own);
    for any other, an attempt cut at the deadline may have reached the server."""

    __slots__ = ("connecting", "sent", "stream", "traced")

    def __init__(self, http: httpx.Client | httpx.AsyncClient) -> None:
        # A mounted or custom transport may not emit the events: then nothing is concluded.
        self.traced = type(getattr(http, "_transport", None)) in _TRACED_TRANSPORTS and not (
            getattr(http, "_mounts", None)
        )
        self.connecting = False
        self.sent = False
        self.stream: Any = None

    def see(self, name: str, info: Mapping[str, Any]) -> None:
        """Take one trace event."""
        if name.startswith("connection.connect_tcp."):
            self.connecting = True
            if name.endswith(".complete"):
                self.stream = info.get("return_value")
        elif name.endswith("send_request_headers.started"):
            self.sent = True

    async def async_see(self, name: str, info: Mapping[str, Any]) -> None:
        """Take one trace event (the async interface wants a coroutine)."""
        self.see(name, info)

    def cut_short(self, request: httpx.Request) -> httpx.TransportError:
        """The outcome of an attempt the deadline cut short: a pool wait or a connection not
        made did not reach the server (and says nothing about its health)."""
        if not self.traced or self.sent:
            return deadline_passed(request)
        if self.connecting:
            return httpx.ConnectTimeout(
                "the call's deadline passed while connecting", request=request
            )
        return httpx.PoolTimeout(
            "the call's deadline passed waiting for a free connection", request=request
        )

    def abandon(self) -> None:
        """Unblock a read the attempt's thread is stuck in, when its connection is known (a
        connection the attempt made itself; a reused one is left to its read timeout)."""
        get = getattr(self.stream, "get_extra_info", None)
        sock = get("socket") if get is not None else None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


_TRACED_TRANSPORTS = (httpx.HTTPTransport, httpx.AsyncHTTPTransport)


def _by_the_deadline(
    exchange: Callable[[Send], Reply | httpx.TransportError],
    step: Send,
    deadline_at: float,
    progress: _Progress,
) -> Reply | httpx.TransportError:
    """Run one sync attempt in a thread of its own and stop waiting for it at the deadline.

    A blocking read cannot be interrupted, and httpx's read timeout bounds each read, not a
    server dribbling its headers a byte at a time. Past the deadline the attempt is left to
    end by itself, and whatever it brings back is closed.
    """
    # What the attempt returned, or (raised=True) what it raised: an httpx error is a value
    # the plan reads, not an exception to raise here.
    ended: list[tuple[bool, Any]] = []
    lock = threading.Lock()
    done = threading.Event()
    given_up = False

    def attempt() -> None:
        try:
            result: tuple[bool, Any] = (False, exchange(step))
        except BaseException as exc:  # handed to the caller, or dropped if it left
            result = (True, exc)
        with lock:
            if not given_up:
                ended.append(result)
            elif not result[0] and isinstance(result[1], Reply):
                result[1].response.close()
        done.set()

    threading.Thread(target=attempt, name="harpoon-attempt", daemon=True).start()
    try:
        done.wait(max(deadline_at - _clock.monotonic(), 0.0))
    finally:
        with lock:
            if not ended:
                given_up = True
    if not ended:
        progress.abandon()
        return progress.cut_short(step.request)
    raised, value = ended[0]
    if raised:
        raise value
    result_value: Reply | httpx.TransportError = value
    return result_value


@attrs.frozen
class AsyncDriver:
    """Carries out flows with an ``httpx.AsyncClient``."""

    http: httpx.AsyncClient
    max_response_bytes: int

    async def run(self, flow: Flow[T], sleep: Callable[[float], Awaitable[Any]] | None = None) -> T:
        """Run ``flow`` to its end and return its value."""
        outcome: SendOutcome = None
        failure: HostedAIError | None = None
        try:
            while True:
                step = flow.send(outcome) if failure is None else flow.throw(failure)
                outcome, failure = None, None
                if type(step) is Sleep:
                    await (sleep or _clock.async_sleep)(step.seconds)
                    continue
                assert type(step) is Send
                try:
                    outcome = await self.send(step)
                except HostedAIError as exc:  # the flow decides what each failure means
                    failure = exc
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            flow.close()

    async def send(self, step: Send) -> Reply | httpx.TransportError:
        """One attempt, bounded as a whole by the call's deadline."""
        if self.http.is_closed:
            raise closed_error()
        if step.deadline_at is None:
            return await self._exchange(step)
        import asyncio

        progress = _Progress(self.http)
        step.request.extensions["trace"] = progress.async_see
        try:
            async with asyncio.timeout(max(step.deadline_at - _clock.monotonic(), 0.0)):
                return await self._exchange(step)
        except TimeoutError:
            return progress.cut_short(step.request)

    async def _exchange(self, step: Send) -> Reply | httpx.TransportError:
        try:
            response = await self.http.send(step.request, stream=True)
        except httpx.TransportError as exc:
            return exc
        if step.stream and response.status_code < 300:
            return Reply(response, b"")
        try:
            body = Body(response, self.max_response_bytes)
            if body.loaded is not None:
                return Reply(response, body.loaded)
            async for chunk in (
                response.aiter_raw() if body.decoding.raw else response.aiter_bytes()
            ):
                body.feed(chunk)
            return Reply(response, body.finish())
        except httpx.TransportError as exc:
            return exc
        except httpx.DecodingError as exc:
            raise undecodable(response, exc) from None
        finally:
            await response.aclose()
