"""One way to say each thing: the same idea is spelt the same way on every object."""

from __future__ import annotations

import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator


@pytest.mark.parametrize(
    "cls",
    [
        harpoon.AsyncHostedAI,
        harpoon.AsyncEndpoint,
        harpoon.AsyncLease,
        harpoon.AsyncInferenceStream,
        harpoon.Orchestrator,
        harpoon.Session,
    ],
)
def test_every_async_resource_closes_with_aclose_and_close_alike(cls: type) -> None:
    assert cls.aclose is cls.close  # httpx's and anyio's name, and openai-python's


async def test_aclose_closes_the_async_clients_own_connection_pool() -> None:
    with Emulator().serve() as base_url:
        client = harpoon.AsyncHostedAI(base_url, "sk")
        assert (await client.health()).status == "ok"
        await client.aclose()
        with pytest.raises(harpoon.UsageError, match="client is closed"):
            await client.health()
