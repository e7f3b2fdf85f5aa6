"""Streamed inference: the ``text/event-stream`` decoder and the two stream objects.

The decoder is sans-I/O (bytes in, ``InferenceChunk``s out, every bound checked);
``_Reader`` adds the body's content decoding; ``InferenceStream`` and
``AsyncInferenceStream`` only pull bytes and close the connection.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any, NoReturn, Protocol, Self

import httpx

from .. import _models as models
from .. import _telemetry as telemetry
from .._config import DEFAULT_MAX_RESPONSE_BYTES
from .._exceptions import APITimeoutError, HostedAIError, UsageError
from .._models import InferenceChunk
from . import _clock
from ._body import Decoding
from ._errors import (
    decode_json,
    invalid_answer,
    request_id,
    too_large_error,
    transport_error,
    undecodable,
)

__all__ = [
    "AsyncInferenceStream",
    "EventDecoder",
    "EventReader",
    "InferenceStream",
    "check_stream_type",
]


class EventReader(Protocol):
    """How another dialect's events become chunks (``_openai.StreamEvents``): one per stream."""

    def event(self, data: object, request_id: str | None) -> list[InferenceChunk]:
        """The chunks of one event's decoded JSON; ``InvalidPayload`` when it is wrong."""
        ...

    def end(self, request_id: str | None) -> list[InferenceChunk]:
        """The chunks the ``[DONE]`` event completes; ``InvalidPayload`` when it came early."""
        ...


class EventDecoder:
    """Turns the bytes of a ``text/event-stream`` into ``InferenceChunk``s.

    One event (its ``data:`` lines, or any single line) may be at most ``limit`` bytes;
    and, as the wait for a single read is bounded by the read timeout, the time between
    two events is bounded by it too, so comment lines sent as keepalives cannot hold a
    stream open forever.
    """

    def __init__(
        self, response: httpx.Response, limit: int, events: EventReader | None = None
    ) -> None:
        self._response = response
        # How an event's payload becomes chunks (``None``: the HostedAI API's own events).
        self._events = events
        self._request_id = request_id(response)
        self._limit = limit
        self._idle: float | None = response.request.extensions.get("timeout", {}).get("read")
        self._last_event = _clock.monotonic()
        self._buffer = bytearray()
        self._scanned = 0  # how much of the buffer is known to hold no line end
        self._data: list[str] = []
        self._pending = 0  # bytes of the event's data lines so far
        self.done = False

    def feed(self, data: bytes) -> list[InferenceChunk]:
        """Take the next decoded bytes; return the chunks of the events they complete."""
        buffer = self._buffer
        buffer += data
        chunks: list[InferenceChunk] = []
        start = 0
        while not self.done:
            end = buffer.find(b"\n", self._scanned)
            if end < 0:
                break
            if end - start > self._limit:
                raise too_large_error(self._response, self._limit, "an event of the stream")
            line = bytes(buffer[start:end]).decode("utf-8", "replace").removesuffix("\r")
            size = end - start
            start = self._scanned = end + 1
            self._line(line, size, chunks)
        del buffer[:start]
        self._scanned = len(buffer)
        if self._pending + len(buffer) > self._limit:
            raise too_large_error(self._response, self._limit, "an event of the stream")
        if chunks or self.done:
            self._last_event = _clock.monotonic()
        elif self._idle is not None and _clock.monotonic() - self._last_event > self._idle:
            raise APITimeoutError(
                f"the stream sent no event for {self._idle:.3g}s (the read timeout)"
            )
        return chunks

    def _line(self, line: str, size: int, chunks: list[InferenceChunk]) -> None:
        if line.startswith("data:"):
            self._pending += size
            if self._pending > self._limit:
                raise too_large_error(self._response, self._limit, "an event of the stream")
            # The event-stream format drops one space after the colon, and no more.
            self._data.append(line[6:] if line[5:6] == " " else line[5:])
            return
        if line or not self._data:
            return  # comments, other fields, or a blank line with no event pending
        data = "\n".join(self._data)
        self._data.clear()
        self._pending = 0
        events = self._events
        payload: object = None
        try:
            if data == "[DONE]":
                self.done = True
                if events is not None:
                    chunks += events.end(self._request_id)
                return
            payload = decode_json(data, self._response)
            if events is None:
                chunks.append(models.parse_chunk(payload, self._request_id))
            else:
                chunks += events.event(payload, self._request_id)
            return
        except models.InvalidPayload as exc:
            reason = str(exc)
        raise invalid_answer(reason, self._response, payload)

    def finish(self) -> None:
        """Check that the stream ended properly."""
        if not self.done:
            raise invalid_answer(
                "the event stream ended before its [DONE] event", self._response, None
            )


def check_stream_type(response: httpx.Response) -> None:
    """Refuse an answer that is not an event stream (the call's trace ends with it)."""
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith("text/event-stream"):
        error = invalid_answer(
            f"expected an event stream, got content-type {content_type!r}", response, None
        )
        telemetry.stream_trace(response).failed(error)
        raise error


class _Reader:
    """The chunks of a stream's body: content-decoded in bounded pieces, then SSE-decoded."""

    def __init__(
        self, response: httpx.Response, limit: int, events: EventReader | None = None
    ) -> None:
        self._decoding = Decoding(response)
        self._events = EventDecoder(response, limit, events)
        self._trace = telemetry.stream_trace(response)
        self.raw = self._decoding.raw

    @property
    def done(self) -> bool:
        """Whether the ``[DONE]`` event came."""
        return self._events.done

    def feed(self, data: bytes) -> list[InferenceChunk]:
        """The chunks the next bytes of the body complete."""
        chunks: list[InferenceChunk] = []
        for piece in self._decoding.decode(data):
            chunks += self._events.feed(piece)
            if self._events.done:
                break
        return self._told(chunks)

    def finish(self) -> list[InferenceChunk]:
        """The last chunks, once the body ended; checks that the stream ended properly."""
        chunks: list[InferenceChunk] = []
        for piece in self._decoding.finish():
            chunks += self._events.feed(piece)
        self._events.finish()
        return self._told(chunks)

    def _told(self, chunks: list[InferenceChunk]) -> list[InferenceChunk]:
        """``chunks``, once the call's trace has seen them (and the end, if it came)."""
        trace = self._trace
        for chunk in chunks:
            trace.chunk(chunk)
        if self._events.done:
            trace.stream_ended()
        return chunks


@contextmanager
def _reading(response: httpx.Response) -> Iterator[None]:
    """httpx's errors while a stream is read, as errors of the tree; the call's trace ends
    with the error, or as it is when the reading stops early."""
    trace = telemetry.stream_trace(response)
    try:
        try:
            yield
        except httpx.TransportError as exc:
            raise transport_error(exc)  # noqa: B904 (caused by a stand-in without the key)
        except httpx.DecodingError as exc:
            raise undecodable(response, exc) from None
        except httpx.StreamError as exc:  # closed before it was read
            raise HostedAIError(f"the stream cannot be read: {exc}") from None
    except GeneratorExit:  # the reader stopped early: no error
        raise
    except BaseException as exc:
        trace.failed(exc)
        raise
    finally:
        trace.stream_ended()


def _already_read() -> HostedAIError:
    return HostedAIError("this stream was already read; start a new one")


class _Stream:
    """What both stream objects share: nothing is sent until the stream is entered or read
    (as httpx's ``stream()``), then ``response`` and ``request_id`` say what came back."""

    _how: str  # how the stream is opened, for the message when it was not

    def __init__(
        self,
        max_event_bytes: int,
        events: Callable[[], EventReader] | None,
    ) -> None:
        self._max_event_bytes = max_event_bytes
        self._events = events
        self._response: httpx.Response | None = None
        self._started = False  # iterated (once only)
        self._closed = False
        self.request_id: str | None = None
        """The server's ``x-request-id``, once the request was sent."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} request_id={self.request_id!r}>"

    @property
    def response(self) -> httpx.Response:
        """The HTTP response carrying the stream (once the request was sent)."""
        if self._response is None:
            raise UsageError(f"the stream was not started: {self._how}")
        return self._response

    def _begin(self) -> None:
        """Mark the stream as being read; refuse a second read, or one after closing."""
        if self._started:
            raise _already_read()
        self._started = True

    def _opening(self) -> None:
        if self._closed:
            raise UsageError("the stream cannot be read: it was closed before it started")

    def _opened(self, response: httpx.Response) -> None:
        self._response = response
        self.request_id = request_id(response)

    def _reader(self, response: httpx.Response) -> _Reader:
        events = None if self._events is None else self._events()
        return _Reader(response, self._max_event_bytes, events)


class InferenceStream(_Stream):
    """The chunks of a streamed inference: ``with client.stream(...) as chunks: for ...``.

    Made by ``HostedAI.stream(...)`` and ``Lease.stream(...)``. Nothing is sent until the
    stream is entered or iterated. Leaving the block closes the connection, however it is
    left; so do ``close()`` and stopping a ``for`` loop early.

    One event may be at most ``max_event_bytes`` long (the client's ``max_response_bytes``),
    and the wait between two events at most the read timeout (see docs/limits.md).
    """

    _how = "iterate it, or use `with client.stream(...) as chunks:`"

    def __init__(
        self,
        start: Callable[[], httpx.Response],
        max_event_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        events: Callable[[], EventReader] | None = None,
    ) -> None:
        super().__init__(max_event_bytes, events)
        self._start = start

    def _open(self) -> httpx.Response:
        if self._response is None:
            self._opening()
            response = self._start()
            try:
                check_stream_type(response)
            except BaseException:
                response.close()
                raise
            self._opened(response)
        return self._response  # type: ignore[return-value]

    def __iter__(self) -> Iterator[InferenceChunk]:
        self._begin()
        response = self._open()
        try:
            with _reading(response):
                reader = self._reader(response)
                for data in response.iter_raw() if reader.raw else response.iter_bytes():
                    yield from reader.feed(data)
                    if reader.done:
                        return
                yield from reader.finish()
        finally:
            response.close()

    def close(self) -> None:
        """Stop the stream and close its connection."""
        self._closed = True
        if self._response is not None:
            telemetry.stream_trace(self._response).stream_ended()
            self._response.close()

    def __aiter__(self) -> NoReturn:
        raise UsageError("this stream comes from the sync client: iterate it with `for`")

    def __enter__(self) -> Self:
        self._open()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class AsyncInferenceStream(_Stream):
    """The chunks of a streamed inference, for ``async for``. Made by
    ``AsyncHostedAI.stream(...)`` and ``AsyncLease.stream(...)``.

    ``async with client.stream(...) as chunks:`` sends the request on entering and closes
    the connection on leaving, however the block ends; ``chunks = await client.stream(...)``
    sends it at once (then ``aclose()`` it to stop early). Nothing is sent before either.

    One event may be at most ``max_event_bytes`` long (the client's ``max_response_bytes``),
    and the wait between two events at most the read timeout (see docs/limits.md).
    """

    _how = "await it, or use `async with client.stream(...) as chunks:`"

    def __init__(
        self,
        start: Callable[[], Awaitable[httpx.Response]],
        max_event_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        events: Callable[[], EventReader] | None = None,
    ) -> None:
        super().__init__(max_event_bytes, events)
        self._start = start

    async def _open(self) -> httpx.Response:
        if self._response is None:
            self._opening()
            response = await self._start()
            try:
                check_stream_type(response)
            except BaseException:
                await response.aclose()
                raise
            self._opened(response)
        return self._response  # type: ignore[return-value]

    async def _opened_self(self) -> Self:
        await self._open()
        return self

    def __await__(self) -> Generator[Any, None, Self]:
        return self._opened_self().__await__()

    async def __aiter__(self) -> AsyncIterator[InferenceChunk]:
        self._begin()
        response = await self._open()
        try:
            with _reading(response):
                reader = self._reader(response)
                async for data in response.aiter_raw() if reader.raw else response.aiter_bytes():
                    for chunk in reader.feed(data):
                        yield chunk
                    if reader.done:
                        return
                for chunk in reader.finish():
                    yield chunk
        finally:
            await response.aclose()

    def __iter__(self) -> NoReturn:
        raise UsageError(
            "this stream is async: `async with client.stream(...) as chunks: "
            "async for chunk in chunks: ...`"
        )

    async def aclose(self) -> None:
        """Stop the stream and close its connection. ``close()`` is the same method."""
        self._closed = True
        if self._response is not None:
            telemetry.stream_trace(self._response).stream_ended()
            await self._response.aclose()

    close = aclose

    async def __aenter__(self) -> Self:
        return await self._opened_self()

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()
