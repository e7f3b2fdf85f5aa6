"""Fixtures for orchestrator tests: clients on an emulator, in-process or over TCP."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import ExitStack
from typing import Any

import attrs
import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator
from tests.dialects import allocation_of, parametrize_dialects

API_KEY = "sk-orchestrator-test"
# Quick retries, so that faults cost milliseconds, not seconds.
FAST_RETRY = harpoon.RetryPolicy(max_retries=2, initial_backoff=0.001, max_backoff=0.005)

Wrap = Callable[[httpx.AsyncBaseTransport], httpx.AsyncBaseTransport]
Connect = Callable[..., harpoon.AsyncHostedAI]


@pytest.fixture
async def connect(wire: str) -> AsyncIterator[Connect]:
    """Make clients for emulators over ``wire``; closes them and stops servers at teardown."""
    servers = ExitStack()
    connections: list[httpx.AsyncClient] = []

    def factory(
        emu: Emulator, *, wrap: Wrap | None = None, **options: Any
    ) -> harpoon.AsyncHostedAI:
        retries = options.pop("max_retries", FAST_RETRY.max_retries)
        options.setdefault("retry", attrs.evolve(FAST_RETRY, max_retries=retries))
        if wire == "tcp":
            base_url = servers.enter_context(emu.serve())
            transport: httpx.AsyncBaseTransport = httpx.AsyncHTTPTransport()
        else:
            base_url = "http://127.0.0.1:8080"
            transport = emu.async_transport()
        if wrap is not None:
            transport = wrap(transport)
        http = httpx.AsyncClient(transport=transport)
        connections.append(http)
        return harpoon.AsyncHostedAI(base_url, API_KEY, http_client=http, **options)

    with servers:
        yield factory
        for http in connections:
            await http.aclose()


class PeakPerAllocation(httpx.AsyncBaseTransport):
    """Counts the inference requests in flight on each allocation and keeps the peak."""

    def __init__(self, inner: httpx.AsyncBaseTransport, emu: Emulator) -> None:
        self.inner = inner
        self.emu = emu
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        allocation = allocation_of(self.emu, request)
        if allocation is None:
            return await self.inner.handle_async_request(request)
        self.now[allocation] += 1
        self.peak[allocation] = max(self.peak[allocation], self.now[allocation])
        try:
            response = await self.inner.handle_async_request(request)
            await response.aread()
            return response
        finally:
            self.now[allocation] -= 1

    async def aclose(self) -> None:
        await self.inner.aclose()


class Ticks:
    """An injectable ``sleep`` for the orchestrator's upkeep: counts rounds, waits no time."""

    def __init__(self) -> None:
        self.count = 0

    async def __call__(self, seconds: float) -> None:
        self.count += 1
        await asyncio.sleep(0.001)

    async def rounds(self, n: int = 2) -> None:
        """Wait until ``n`` more upkeep rounds went by (so one ran whole after now)."""
        target = self.count + n
        while self.count < target:
            await asyncio.sleep(0.001)


def live_ids(emu: Emulator) -> list[str]:
    """The ids of the allocations still holding GPUs."""
    return [record.id for record in emu.live_allocations()]


@pytest.fixture
def ticks() -> Ticks:
    return Ticks()


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    # gpuaas runs each test in-process; over TCP it has the soaks (tests/orchestrator/
    # test_soak.py, test_endpoints.py, tests/gpuaas) and the tests that serve the emulator
    # themselves: running every case over TCP twice would cost a minute of the suite.
    # ``wire``: how the client reaches the emulator, in-process transport or real TCP.
    wires = ("in-process", "tcp")
    if "wire" in metafunc.fixturenames and "dialect" not in metafunc.fixturenames:
        metafunc.parametrize("wire", wires)
    parametrize_dialects(metafunc, wires=(wires, ("in-process",)))
