"""Fixtures for the client tests: the client flavor, clients over emulators, recorded waits."""

from __future__ import annotations

import time
import types
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon._http import _clock
from hostedai_harpoon.testing import Emulator
from tests.client._support import API_KEY, BASE_URL, AnyClient, ClientFactory, Flavor, Waits, close


@pytest.fixture
async def make_client(flavor: Flavor) -> AsyncIterator[ClientFactory]:
    """Build clients of the test's flavor over an emulator's in-process transport."""
    made: list[tuple[AnyClient, httpx.Client | httpx.AsyncClient]] = []

    def factory(emu: Emulator, /, **kwargs: Any) -> AnyClient:
        kwargs.setdefault("base_url", BASE_URL)
        kwargs.setdefault("api_key", API_KEY)
        client: AnyClient
        http: httpx.Client | httpx.AsyncClient
        if flavor == "sync":
            http = emu.http_client()
            client = harpoon.HostedAI(http_client=http, **kwargs)
        else:
            http = emu.async_http_client()
            client = harpoon.AsyncHostedAI(http_client=http, **kwargs)
        made.append((client, http))
        return client

    yield factory
    for client, http in made:
        await close(client)
        if isinstance(http, httpx.AsyncClient):
            await http.aclose()
        else:
            http.close()


@pytest.fixture(autouse=True)
def waits(monkeypatch: pytest.MonkeyPatch) -> Waits:
    """Record (and skip) every wait between attempts, for every client test."""
    recorder = Waits()
    clock = types.SimpleNamespace(**vars(time))
    clock.monotonic = recorder.monotonic
    monkeypatch.setattr(_clock, "sleep", recorder.sleep)
    monkeypatch.setattr(_clock, "async_sleep", recorder.async_sleep)
    monkeypatch.setattr(_clock, "monotonic", recorder.monotonic)
    return recorder
