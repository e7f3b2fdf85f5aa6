"""Streamed inference three ways: on an allocation, on a lease, and in an Orchestrator session.

Run ``python examples/streaming.py``. Against the embedded emulator by default (no
credentials, no network); against a real HostedAI endpoint when ``HOSTED_AI_BASE_URL`` and
``HOSTED_AI_API_KEY`` are set.

Each stream yields ``InferenceChunk`` items: a ``delta`` of text, and on the last one the
``finish_reason`` and the token ``usage``. Leaving a ``with`` block early closes the stream.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator

BASE_URL = "http://127.0.0.1:8080"  # the emulator answers in-process: no socket is opened
MODEL = "gemma-3-270m"


def show(chunks: Iterable[harpoon.InferenceChunk]) -> None:
    """Print each delta as it comes, then the usage from the last chunk."""
    usage = None
    for chunk in chunks:
        print(chunk.delta, end="", flush=True)
        usage = chunk.usage or usage
    print(f"\n  ({usage.output_tokens} tokens out)" if usage else "\n  (no usage reported)")


def sync_streams(emulator: Emulator | None) -> list[str]:
    """A stream on an allocation made by hand, then one on a lease; their allocation ids."""
    if emulator is None:
        client = harpoon.HostedAI()
    else:
        client = harpoon.HostedAI(BASE_URL, "demo-key", http_client=emulator.http_client())
    with client:
        print("== client.stream() on an allocation made by hand")
        allocation = client.create_allocation(model=MODEL)
        try:
            with client.stream(allocation.id, "Count to five.", max_tokens=12) as chunks:
                show(chunks)
        finally:
            client.release_allocation(allocation.id)

        print("== lease.stream() inside client.allocate()")
        with (
            client.allocate(model=MODEL) as lease,
            lease.stream("Name three colours.", max_tokens=12) as chunks,
        ):
            show(chunks)
        return [allocation.id, lease.id]


async def session_stream(emulator: Emulator | None) -> None:
    """A stream routed by the Orchestrator inside a session."""
    if emulator is None:
        client = harpoon.AsyncHostedAI()
    else:
        client = harpoon.AsyncHostedAI(
            BASE_URL, "demo-key", http_client=emulator.async_http_client()
        )
    print("== session.stream() in an Orchestrator session")
    async with (
        client,
        harpoon.Orchestrator(client) as orchestrator,
        orchestrator.allocate() as session,
        session.stream("Explain why the sky is blue, step by step.", max_tokens=16) as chunks,
    ):
        print(f"  routed to {chunks.decision.target.name}: {chunks.decision.reason}")
        usage = None
        async for chunk in chunks:
            print(chunk.delta, end="", flush=True)
            usage = chunk.usage or usage
        print(f"\n  ({usage.output_tokens} tokens out)" if usage else "\n  (no usage reported)")


def main() -> None:
    """Run the three streams, then say what is still held."""
    emulator = None
    if os.environ.get("HOSTED_AI_BASE_URL"):
        print(f"against {os.environ['HOSTED_AI_BASE_URL']} (from HOSTED_AI_BASE_URL)")
    else:
        print("against the embedded emulator (set HOSTED_AI_BASE_URL for a real endpoint)")
        emulator = Emulator(stream_chunk_delay=0.01)
    ids = sync_streams(emulator)
    asyncio.run(session_stream(emulator))
    print(f"released by hand and by the lease: {', '.join(ids)}")
    if emulator is not None:
        print(f"allocations left on the emulator: {len(emulator.live_allocations())}")


if __name__ == "__main__":
    main()
