"""Bodies and event streams decoded by the client as they arrive: gzip, deflate (wrapped or
raw), stacked encodings, bodies split at awkward places, and the size limits on the decoded
bytes. The answers come from a mock transport that hands the body over in given chunks."""

from __future__ import annotations

import gzip
import zlib
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

import hostedai_harpoon as harpoon
from tests.client._support import API_KEY, BASE_URL, AnyClient, Flavor, call, close, take
from tests.dialects import TEAM

HEALTH = b'{"status": "ok", "version": "1.2.3"}'
# What the platform's plain call (list_pools) reads: one pool, named as HEALTH's version.
POOLS = b'[{"id": 7, "pool_name": "p", "gpu_model_type": "1.2.3", "available_vgpus": 8}]'
EVENTS = (
    b'data: {"id":"inf_1","delta":"Hel"}\r\n\r\n'
    b": keepalive\r\n"
    b'data: {"id":"inf_1","delta":"lo"}\n\n'
    b'data: {"id":"inf_1","delta":"","finish_reason":"stop",'
    b'"usage":{"input_tokens":1,"output_tokens":2}}\n\n'
    b"data: [DONE]\n\n"
)


class Chunks(httpx.SyncByteStream, httpx.AsyncByteStream):
    """A body handed over in the given pieces, as a network would."""

    def __init__(self, pieces: list[bytes]) -> None:
        self._pieces = pieces

    def __iter__(self) -> Iterator[bytes]:
        yield from self._pieces

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for piece in self._pieces:
            yield piece


def split(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


@pytest.fixture
def on(dialect: str) -> dict[str, Any]:
    """What a client needs to speak ``dialect``."""
    return {} if dialect == "v1" else {"dialect": "gpuaas", "team_id": TEAM}


async def plain_call(client: AnyClient) -> str:
    """The dialect's one-request call (v1: health; the platform: its pools); the version."""
    if client.dialect == "v1":
        return str((await call(client, "health")).version)
    return str((await call(client, "list_pools"))[0].gpu_type)


def make(flavor: Flavor, body: bytes, headers: dict[str, str], **options: Any) -> AnyClient:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers=headers, stream=Chunks(split(body, 7)))

    transport = httpx.MockTransport(answer)
    if flavor == "sync":
        return harpoon.HostedAI(
            BASE_URL, API_KEY, http_client=httpx.Client(transport=transport), **options
        )
    return harpoon.AsyncHostedAI(
        BASE_URL, API_KEY, http_client=httpx.AsyncClient(transport=transport), **options
    )


def raw_deflate(data: bytes) -> bytes:
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


def _encode(encoding: str) -> bytes:
    """``POOLS`` in one of the encodings ``HEALTH`` is sent in below."""
    if encoding == "gzip":
        return gzip.compress(POOLS)
    if encoding == "deflate, gzip":
        return gzip.compress(zlib.compress(POOLS))
    return zlib.compress(POOLS)


JSON = {"content-type": "application/json"}
SSE = {"content-type": "text/event-stream"}


@pytest.mark.parametrize(
    ("encoding", "body"),
    [
        (None, HEALTH),
        ("gzip", gzip.compress(HEALTH)),
        ("deflate", zlib.compress(HEALTH)),
        ("deflate", raw_deflate(HEALTH)),
        ("deflate, gzip", gzip.compress(zlib.compress(HEALTH))),
        ("identity", HEALTH),
    ],
)
async def test_an_encoded_body_is_decoded_piece_by_piece(
    on: dict[str, Any], flavor: Flavor, encoding: str | None, body: bytes
) -> None:
    if on:  # the same encodings of the platform's answer
        body = body.replace(HEALTH, POOLS) if encoding in (None, "identity") else _encode(encoding)
    headers = JSON if encoding is None else {**JSON, "content-encoding": encoding}
    client = make(flavor, body, headers, **on)
    try:
        version = await plain_call(client)
    finally:
        await close(client)
    assert version == "1.2.3"


async def test_the_limit_counts_inflated_bytes_not_compressed_ones(
    on: dict[str, Any], flavor: Flavor
) -> None:
    inflated = b'{"status": "ok", "version": "' + b"9" * 100_000 + b'"}'
    body = gzip.compress(inflated)
    assert len(body) < 1000
    headers = {**JSON, "content-encoding": "gzip", "content-length": str(len(body))}
    client = make(flavor, body, headers, max_response_bytes=10_000, **on)
    try:
        with pytest.raises(harpoon.ResponseValidationError, match="larger than 10000 bytes"):
            await plain_call(client)
    finally:
        await close(client)


@pytest.mark.parametrize(
    "body",
    [
        gzip.compress(HEALTH)[:10] + b"\xff" * 20,  # an invalid block type
        gzip.compress(HEALTH)[:-12],  # cut before its last block ends
    ],
)
async def test_a_corrupt_gzip_body_is_a_validation_error(
    on: dict[str, Any], flavor: Flavor, body: bytes
) -> None:
    client = make(flavor, body, {**JSON, "content-encoding": "gzip"}, **on)
    try:
        with pytest.raises(harpoon.ResponseValidationError, match="could not be decoded") as err:
            await plain_call(client)
    finally:
        await close(client)
    assert not isinstance(err.value.__context__, httpx.HTTPError)


@pytest.mark.parametrize("encoding", [None, "gzip"])
async def test_an_event_stream_is_read_across_split_lines(
    flavor: Flavor, encoding: str | None
) -> None:
    body = EVENTS if encoding is None else gzip.compress(EVENTS)
    headers = SSE if encoding is None else {**SSE, "content-encoding": encoding}
    client = make(flavor, body, headers)
    try:
        chunks = await take(await call(client, "stream", "alloc_1", "hi"))
    finally:
        await close(client)
    assert "".join(chunk.delta for chunk in chunks) == "Hello"
    assert chunks[-1].finish_reason == "stop"


async def test_an_event_longer_than_the_limit_ends_the_stream(flavor: Flavor) -> None:
    # Two data lines, each under the limit, make one event over it.
    body = b"data: " + b"x" * 600 + b"\ndata: " + b"y" * 600 + b"\n\ndata: [DONE]\n\n"
    client = make(flavor, body, SSE, max_response_bytes=1000)
    try:
        with pytest.raises(harpoon.ResponseValidationError, match="an event of the stream"):
            await take(await call(client, "stream", "alloc_1", "hi"))
    finally:
        await close(client)
