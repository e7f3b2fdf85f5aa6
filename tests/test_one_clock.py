"""One clock: the drivers, the body and event-stream readers and the leases read time through
``_http/_clock.py``, the seam tests move."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon._http import _clock
from hostedai_harpoon._http._body import clip_reads
from hostedai_harpoon._http._sse import EventDecoder

PACKAGE = Path(harpoon.__file__).parent


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    fake = Clock()
    monkeypatch.setattr(_clock, "monotonic", fake.monotonic)
    return fake


def event_stream(read_timeout: float) -> httpx.Response:
    request = httpx.Request("POST", "http://h/v1/inference")
    request.extensions["timeout"] = {"read": read_timeout}
    return httpx.Response(200, headers={"content-type": "text/event-stream"}, request=request)


def test_the_event_readers_idle_bound_follows_the_clock_seam(clock: Clock) -> None:
    decoder = EventDecoder(event_stream(read_timeout=5.0), limit=1024)
    assert decoder.feed(b": keepalive\n") == []
    clock.now += 6.0  # past the read timeout with no event: only the seam says so
    with pytest.raises(harpoon.APITimeoutError, match="no event for 5s"):
        decoder.feed(b": keepalive\n")


def test_the_body_readers_deadline_follows_the_clock_seam(clock: Clock) -> None:
    request = httpx.Request("GET", "http://h/v1/health", extensions={"timeout": {"read": 30.0}})
    clip_reads(request, deadline_at=clock.now + 5.0)
    assert request.extensions["timeout"]["read"] == 5.0


@pytest.mark.parametrize("layer", ["_http", "_leases"])
def test_no_decision_reads_the_time_module_directly(layer: str) -> None:
    direct = re.compile(r"\btime\.(monotonic|time|sleep)\(")
    offenders = [
        path.name
        for path in (PACKAGE / layer).glob("*.py")
        if path.name != "_clock.py" and direct.search(path.read_text(encoding="utf-8"))
    ]
    assert offenders == []
