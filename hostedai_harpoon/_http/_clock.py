"""The one seam for time: every wait and every deadline decision of the client, its drivers,
body and event-stream readers and its leases goes through here, so tests can make waits
instant and move the clock (``monkeypatch.setattr``). Not through here: telemetry's
durations (measurements, not decisions), the circuit breaker's clock (injected, sans-I/O),
the async lease's keepalive waits (real waits, so that a test skipping waits does not spin
renewals) and the Orchestrator's ``clock``/``sleep`` arguments."""

from __future__ import annotations

import time

__all__ = ["async_sleep", "monotonic", "sleep", "wall"]

monotonic = time.monotonic
sleep = time.sleep
wall = time.time
"""Wall-clock seconds, for comparing with the server's timestamps (an allocation's expiry)."""


async def async_sleep(seconds: float) -> None:
    """``asyncio.sleep``; asyncio is imported here, not at the top, so that sync users do
    not pay for importing it."""
    import asyncio

    await asyncio.sleep(seconds)
