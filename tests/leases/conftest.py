"""Fixtures for lease tests: clients wired to an in-process emulator, waits made instant."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator

import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon._http import _clock
from hostedai_harpoon.testing import Emulator
from tests.dialects import parametrize_dialects

BASE_URL = "http://127.0.0.1:8080"


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Make the SDK's retry and polling waits instant; record how long each would have been."""
    recorded: list[float] = []

    def sleep(seconds: float) -> None:
        recorded.append(seconds)

    async def async_sleep(seconds: float) -> None:
        recorded.append(seconds)
        await asyncio.sleep(0)  # still let other tasks run, as a real wait would

    monkeypatch.setattr(_clock, "sleep", sleep)
    monkeypatch.setattr(_clock, "async_sleep", async_sleep)
    return recorded


def sync_client(emu: Emulator, **options: object) -> harpoon.HostedAI:
    """A sync client talking to ``emu`` in-process."""
    return harpoon.HostedAI(BASE_URL, "sk-test", http_client=emu.http_client(), **options)  # type: ignore[arg-type]


def async_client(emu: Emulator, **options: object) -> harpoon.AsyncHostedAI:
    """An async client talking to ``emu`` in-process."""
    return harpoon.AsyncHostedAI(
        BASE_URL,
        "sk-test",
        http_client=emu.async_http_client(),
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def client(emulator: Emulator) -> Iterator[harpoon.HostedAI]:
    with sync_client(emulator) as c:
        yield c


@pytest.fixture
async def aclient(emulator: Emulator) -> AsyncIterator[harpoon.AsyncHostedAI]:
    async with async_client(emulator) as c:
        yield c


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_dialects(metafunc)
