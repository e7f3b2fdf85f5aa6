"""Reading a body within bounds: decoded bytes are counted as they arrive, gzip and deflate
are inflated a bounded piece at a time, so neither a huge, endless nor a compressed-bomb
answer can take more than ``max_response_bytes`` of memory.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import httpx

from . import _clock
from ._errors import too_large_error, undecodable

__all__ = ["Body", "Decoding", "clip_reads"]


def clip_reads(request: httpx.Request, deadline_at: float) -> None:
    """Make the reads still to come on ``request`` end by ``deadline_at`` at the latest.

    httpcore takes the read timeout from the request when it starts reading the body, so
    clipping it here bounds a body that stalls after its headers.
    """
    timeouts = dict(request.extensions.get("timeout", {}))
    remaining = max(deadline_at - _clock.monotonic(), 0.001)
    read = timeouts.get("read")
    timeouts["read"] = remaining if read is None else min(read, remaining)
    request.extensions["timeout"] = timeouts


# Decoded bytes come out of an inflater in pieces of at most this size, so that one small
# compressed chunk cannot inflate into a huge string before its size is checked.
_PIECE = 1 << 20


class _Inflater:
    """One gzip or deflate layer of a body, inflated a bounded piece at a time."""

    __slots__ = ("_fallback", "_fed", "_started", "_zlib")

    def __init__(self, wbits: int, fallback: int | None = None) -> None:
        self._zlib = zlib.decompressobj(wbits)
        # "deflate" is meant to be zlib-wrapped, but some servers send it raw.
        self._fallback = fallback
        self._started = False
        self._fed = False

    def inflate(self, data: bytes) -> Iterator[bytes]:
        self._fed = self._fed or bool(data)
        if not self._started and self._fallback is not None:
            try:
                out = self._zlib.decompress(data, _PIECE)
            except zlib.error:
                self._zlib = zlib.decompressobj(self._fallback)
                out = self._zlib.decompress(data, _PIECE)
            self._started = True
            data = self._zlib.unconsumed_tail
            if out:
                yield out
        self._started = True
        while data:
            out = self._zlib.decompress(data, _PIECE)
            data = self._zlib.unconsumed_tail
            if out:
                yield out

    def flush(self) -> bytes:
        rest = self._zlib.flush()
        if self._fed and not self._zlib.eof:
            raise zlib.error("the compressed body ended before its end marker")
        return rest


class Decoding:
    """Undoes a body's ``Content-Encoding`` as its raw bytes arrive, in bounded pieces.

    gzip and deflate are inflated here (``raw`` is True: feed it ``iter_raw()``); for any
    other encoding httpx decodes (feed it ``iter_bytes()``), which bounds each raw chunk's
    output only by what that chunk inflates to.
    """

    __slots__ = ("_response", "_stages", "raw")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._stages: list[_Inflater] = []
        # A body an in-memory transport handed over whole is read already.
        self.raw = not response.is_stream_consumed
        encoding = response.headers.get("content-encoding")
        if encoding is None or not self.raw:
            return
        for name in reversed(encoding.split(",")):
            name = name.strip().lower()
            if name == "gzip":
                self._stages.append(_Inflater(zlib.MAX_WBITS | 16))
            elif name == "deflate":
                self._stages.append(_Inflater(zlib.MAX_WBITS, fallback=-zlib.MAX_WBITS))
            elif name not in ("identity", ""):
                self._stages.clear()
                self.raw = False
                return

    def decode(self, data: bytes) -> Iterator[bytes]:
        """The decoded pieces of the next raw chunk."""
        if not self._stages:
            if data:
                yield data
            return
        try:
            yield from self._through(data, 0)
        except zlib.error as exc:
            error = exc
        else:
            return
        raise undecodable(self._response, error)

    def finish(self) -> Iterator[bytes]:
        """What the decoders still hold once the body ended."""
        for index, stage in enumerate(self._stages):
            try:
                rest = stage.flush()
            except zlib.error as exc:
                error = exc
            else:
                yield from self._through(rest, index + 1)
                continue
            raise undecodable(self._response, error)

    def _through(self, data: bytes, first: int) -> Iterator[bytes]:
        if first == len(self._stages):
            if data:
                yield data
            return
        for piece in self._stages[first].inflate(data):
            yield from self._through(piece, first + 1)


class Body:
    """A non-streamed body, decoded as it arrives and refused past ``limit`` decoded bytes."""

    __slots__ = ("_chunks", "_limit", "_made", "_response", "decoding", "loaded")

    def __init__(self, response: httpx.Response, limit: int) -> None:
        self._response = response
        self._limit = limit
        self.loaded: bytes | None = None
        if response.is_stream_consumed:  # an in-memory transport handed it over whole
            self.loaded = response.content
            if len(self.loaded) > limit:
                raise too_large_error(response, limit, "the body")
            return
        length = response.headers.get("content-length")
        if length is not None and length.isascii() and length.isdigit() and int(length) > limit:
            raise too_large_error(response, limit, "the body")
        self._made = 0
        self._chunks: list[bytes] = []
        self.decoding = Decoding(response)

    def feed(self, data: bytes) -> None:
        """Take the next chunk (raw when ``decoding.raw``, else decoded by httpx)."""
        for piece in self.decoding.decode(data):
            self._add(piece)

    def finish(self) -> bytes:
        """The whole decoded body."""
        for piece in self.decoding.finish():
            self._add(piece)
        return b"".join(self._chunks)

    def _add(self, piece: bytes) -> None:
        self._made += len(piece)
        if self._made > self._limit:
            # Dropped now: the error's traceback holds this body in a reference cycle, which
            # only the garbage collector frees (a caller that swallows the error and asks
            # again, as a wait for a pod does, would hold one refused body per answer).
            self._chunks.clear()
            raise too_large_error(self._response, self._limit, "the body")
        self._chunks.append(piece)
