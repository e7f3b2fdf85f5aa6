"""Quickstart: the Orchestrator routes prompts, keeps GPUs warm, and releases them all.

Run ``python examples/quickstart.py``. Against the embedded emulator by default (no
credentials, no network); against a real HostedAI endpoint when ``HOSTED_AI_BASE_URL`` and
``HOSTED_AI_API_KEY`` are set. ``examples/demo.py`` is the longer tour.
"""

from __future__ import annotations

import asyncio
import os

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator

PROMPTS = [
    "Hi there!",
    "What is 17 * 23?",
    "Prove step by step that the square root of 2 is irrational, then explain why the "
    "proof fails for the square root of 4.",
]


def connect() -> tuple[harpoon.AsyncHostedAI, Emulator | None]:
    """A client for the real endpoint when one is configured, else for an emulator."""
    if os.environ.get("HOSTED_AI_BASE_URL"):
        print(f"against {os.environ['HOSTED_AI_BASE_URL']} (from HOSTED_AI_BASE_URL)")
        return harpoon.AsyncHostedAI(), None
    print("against the embedded emulator (set HOSTED_AI_BASE_URL for a real endpoint)")
    emulator = Emulator(latency_scale=0.02)
    client = harpoon.AsyncHostedAI(
        "http://127.0.0.1:8080", "demo-key", http_client=emulator.async_http_client()
    )
    return client, emulator


async def main() -> None:
    """Route three prompts, run a session with a budget, then check nothing is held."""
    client, emulator = connect()
    async with client, harpoon.Orchestrator(client) as orchestrator:
        for prompt in PROMPTS:
            routed = await orchestrator.process(prompt, max_tokens=32)
            print(f"{routed.target.name:14} {prompt[:40]!r}")
            print(f"{'':14} why: {routed.decision.reason}")

        async with orchestrator.allocate(budget=0.05) as session:
            routed = await session.infer("Name three uses of a GPU.", max_tokens=16)
            print(f"session on {routed.target.name}: {routed.result.text[:60]!r}")
            print(f"session spent ${session.spent:.7f} of its $0.05 budget")

        total = orchestrator.snapshot().total
        print(f"{total.requests} requests, est. ${total.cost:.6f}")
    if emulator is not None:
        print(f"allocations left on the emulator: {len(emulator.live_allocations())}")
    print(f"allocations the client could not release: {len(client.orphans())}")


if __name__ == "__main__":
    asyncio.run(main())
