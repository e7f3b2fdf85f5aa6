"""Fixtures for the emulator's own tests: clients wired to the shared ``emulator`` fixture."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from hostedai_harpoon.testing import Emulator, ManualClock

AUTH = {"Authorization": "Bearer test-key"}


@pytest.fixture
def clock() -> ManualClock:
    """A clock that only moves when the test says so."""
    return ManualClock()


@pytest.fixture
def client(emulator: Emulator) -> Iterator[httpx.Client]:
    """An authenticated in-process client of the default emulator."""
    with emulator.http_client(headers=AUTH) as http:
        yield http


@pytest.fixture
async def async_client(emulator: Emulator) -> AsyncIterator[httpx.AsyncClient]:
    """An authenticated in-process async client of the default emulator."""
    async with emulator.async_http_client(headers=AUTH) as http:
        yield http


def allocate(http: httpx.Client, model: str = "gemma-3-270m", **body: object) -> httpx.Response:
    """POST /v1/allocate with ``model`` and any other body fields."""
    return http.post("/v1/allocate", json={"model": model, **body})
