"""The ``text/event-stream`` decoder on its own (``EventDecoder``, sans-I/O): bytes in,
chunks out, whatever the pieces the bytes arrive in."""

from __future__ import annotations

import json

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon._http._sse import EventDecoder

LIMIT = 1024


def decoder(limit: int = LIMIT) -> EventDecoder:
    request = httpx.Request("POST", "https://api.test/v1/inference")
    response = httpx.Response(200, headers={"x-request-id": "req_s"}, request=request)
    return EventDecoder(response, limit)


def event(delta: str, **fields: object) -> bytes:
    return f"data: {json.dumps({'id': 'c1', 'delta': delta, **fields})}\n\n".encode()


LAST = event("!", finish_reason="stop", usage={"input_tokens": 2, "output_tokens": 3})
STREAM = event("Hel") + event("lo, wörld") + LAST + b"data: [DONE]\n\n"


def test_events_become_chunks_and_done_ends_the_stream() -> None:
    events = decoder()
    chunks = events.feed(STREAM)
    assert [c.delta for c in chunks] == ["Hel", "lo, wörld", "!"]
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage == harpoon.Usage(input_tokens=2, output_tokens=3)
    assert all(c.request_id == "req_s" for c in chunks)
    assert events.done
    events.finish()


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_the_pieces_the_bytes_come_in_do_not_matter(size: int) -> None:
    # Pieces of one byte split the UTF-8 of "ö" and the CR LF pairs too.
    stream = STREAM.replace(b"\n", b"\r\n")
    events = decoder()
    chunks = [c for i in range(0, len(stream), size) for c in events.feed(stream[i : i + size])]
    assert [c.delta for c in chunks] == ["Hel", "lo, wörld", "!"]
    assert events.done


def test_the_data_lines_of_one_event_are_joined_with_line_feeds() -> None:
    split = b'data: {"id": "c1",\ndata: "delta": "hi"}\n\n'
    assert [c.delta for c in decoder().feed(split)] == ["hi"]
    # What the joined data was shows in the error for data that is not JSON.
    with pytest.raises(harpoon.ResponseValidationError) as raised:
        decoder().feed(b"data: not\ndata: json\n\n")
    assert raised.value.body == "not\njson"


def test_one_space_after_the_colon_is_dropped_and_no_more() -> None:
    with pytest.raises(harpoon.ResponseValidationError) as raised:
        decoder().feed(b"data:no space\ndata:  two spaces\n\n")
    assert raised.value.body == "no space\n two spaces"


def test_comments_and_other_fields_are_skipped() -> None:
    stream = b": keepalive\nevent: message\nid: 7\nretry: 10\n" + event("x") + b"\n\n\n"
    assert [c.delta for c in decoder().feed(stream)] == ["x"]


def test_what_follows_done_is_ignored() -> None:
    events = decoder()
    assert events.feed(b"data: [DONE]\n\n" + event("late")) == []
    assert events.done


def test_a_stream_that_ends_without_done_breaks_the_contract() -> None:
    events = decoder()
    events.feed(event("partial"))
    with pytest.raises(harpoon.ResponseValidationError, match=r"before its \[DONE\] event"):
        events.finish()


@pytest.mark.parametrize(
    "stream",
    [
        b"data: " + b"x" * LIMIT + b"\n\n",  # one line over the limit
        b"data: " + b"x" * 600 + b"\ndata: " + b"x" * 600 + b"\n\n",  # one event's lines
        b": " + b"x" * (LIMIT + 10),  # a line that never ends
    ],
    ids=["line", "event", "unended"],
)
def test_an_event_larger_than_the_limit_ends_the_stream(stream: bytes) -> None:
    with pytest.raises(harpoon.ResponseValidationError, match="larger than"):
        decoder().feed(stream)


def test_an_event_that_breaks_the_chunk_schema_is_a_validation_error() -> None:
    with pytest.raises(harpoon.ResponseValidationError) as raised:
        decoder().feed(b'data: {"id": "c1"}\n\n')
    assert raised.value.body == {"id": "c1"}
    assert raised.value.request_id == "req_s"
