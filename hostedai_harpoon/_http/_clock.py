"""The one seam for time: every wait and every deadline decision of the SDK goes through
here, so tests can make waits instant and move the clock (``monkeypatch.setattr``)."""

from __future__ import annotations

import time

__all__ = ["async_sleep", "monotonic", "sleep"]

monotonic = time.monotonic
sleep = time.sleep


async def async_sleep(seconds: float) -> None:
    """``asyncio.sleep``; asyncio is imported here, not at the top, so that sync users do
    not pay for importing it."""
    import asyncio

    await asyncio.sleep(seconds)
