"""Helpers for the client tests: one scenario, run on the sync and the async client.

A scenario is an ``async def`` test that takes ``make_client`` and awaits ``call(client,
"method", ...)``: with the ``flavor`` fixture set to ``"sync"`` the calls go through
``HostedAI`` over ``emu.http_client()``, with ``"async"`` through ``AsyncHostedAI`` over
``emu.async_http_client()``.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from typing import Any, Literal, Protocol

import httpx

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator

API_KEY = "sk-test-3f9a1c7e5b2d4e6f8a0b1c2d3e4f5a6b"
"""A distinctive key, so a leak of it can be searched for anywhere."""

BASE_URL = "http://127.0.0.1:8080"
"""Loopback, so plain http is allowed; the in-process transports ignore the host anyway."""

Flavor = Literal["sync", "async"]
AnyClient = harpoon.HostedAI | harpoon.AsyncHostedAI


async def call(client: AnyClient, method: str, /, *args: Any, **kwargs: Any) -> Any:
    """Call ``method`` on either client, awaiting it when the client is async. A stream,
    which sends nothing until it is opened, is opened (entered, or awaited)."""
    result = getattr(client, method)(*args, **kwargs)
    if isinstance(result, harpoon.InferenceStream):
        return result.__enter__()
    if inspect.isawaitable(result):
        return await result
    return result


async def close(client: AnyClient) -> None:
    """Close either client."""
    await call(client, "close")


class ClientFactory(Protocol):
    """Builds a client of the test's flavor wired to an emulator (in-process)."""

    def __call__(self, emu: Emulator, /, **kwargs: Any) -> AnyClient: ...


class Waits:
    """The waits the clients asked for between attempts, in order, none of them slept.

    Each one moves the client's monotonic clock forward by its length, so a deadline
    sees the time pass without the test spending it.
    """

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.skipped = 0.0

    def sleep(self, seconds: float) -> None:
        """Record a wait instead of sleeping."""
        self.seconds.append(seconds)
        self.skipped += seconds

    async def async_sleep(self, seconds: float) -> None:
        """Record a wait instead of sleeping (async)."""
        self.sleep(seconds)

    def monotonic(self) -> float:
        """The real monotonic clock plus every wait skipped so far."""
        return time.monotonic() + self.skipped


def no_jitter(max_retries: int = 2, **kwargs: Any) -> harpoon.RetryPolicy:
    """A retry policy with exact waits: 0.5, 1, 2, ... seconds."""
    return harpoon.RetryPolicy(max_retries=max_retries, jitter=False, **kwargs)


Handler = Callable[[httpx.Request], httpx.Response]


def mock_client(handler: Handler, **kwargs: Any) -> harpoon.HostedAI:
    """A sync client whose every request is answered by ``handler`` (no emulator)."""
    kwargs.setdefault("base_url", BASE_URL)
    kwargs.setdefault("api_key", API_KEY)
    http = httpx.Client(transport=httpx.MockTransport(handler))
    return harpoon.HostedAI(http_client=http, **kwargs)


def mock_async_client(handler: Handler, **kwargs: Any) -> harpoon.AsyncHostedAI:
    """An async client whose every request is answered by ``handler`` (no emulator)."""
    kwargs.setdefault("base_url", BASE_URL)
    kwargs.setdefault("api_key", API_KEY)
    http = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    return harpoon.AsyncHostedAI(http_client=http, **kwargs)


async def take(
    stream: harpoon.InferenceStream | harpoon.AsyncInferenceStream, limit: int | None = None
) -> list[harpoon.InferenceChunk]:
    """Read chunks from either kind of stream, stopping early after ``limit`` of them.

    Stopping early happens inside the stream's ``with`` block, as the docs advise.
    """
    chunks: list[harpoon.InferenceChunk] = []
    if isinstance(stream, harpoon.InferenceStream):
        with stream:
            for chunk in stream:
                chunks.append(chunk)
                if len(chunks) == limit:
                    break
        return chunks
    async with stream:
        async for chunk in stream:
            chunks.append(chunk)
            if len(chunks) == limit:
                break
    return chunks
