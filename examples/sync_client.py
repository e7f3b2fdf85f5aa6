"""The plain synchronous client: the service's state, one allocation by hand, then a lease.

Run ``python examples/sync_client.py``. Against the embedded emulator by default (no
credentials, no network); against a real HostedAI endpoint when ``HOSTED_AI_BASE_URL`` and
``HOSTED_AI_API_KEY`` are set.

By hand, releasing is your job (``try``/``finally``); a lease (``with client.allocate()``)
does it on every way out of the block, an exception or Ctrl-C included.
"""

from __future__ import annotations

import os

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator

MODEL = "gemma-3-270m"


def connect() -> tuple[harpoon.HostedAI, Emulator | None]:
    """A client for the real endpoint when one is configured, else for an emulator."""
    if os.environ.get("HOSTED_AI_BASE_URL"):
        print(f"against {os.environ['HOSTED_AI_BASE_URL']} (from HOSTED_AI_BASE_URL)")
        return harpoon.HostedAI(), None
    print("against the embedded emulator (set HOSTED_AI_BASE_URL for a real endpoint)")
    emulator = Emulator()
    client = harpoon.HostedAI(
        "http://127.0.0.1:8080", "demo-key", http_client=emulator.http_client()
    )
    return client, emulator


def main() -> None:
    """Health and pools, an allocation by hand, a lease, and a check that both are released."""
    client, emulator = connect()
    with client:
        health = client.health()
        print(f"health: {health.status} (version {health.version})")
        for pool in client.list_pools():
            models = ", ".join(pool.models)
            print(f"pool {pool.id}: {pool.gpus_free}/{pool.gpus_total} GPUs free, {models}")

        allocation = client.create_allocation(model=MODEL, gpus=1)
        try:
            print(f"allocated {allocation.id} ({allocation.status.value})")
            result = client.infer(allocation.id, "Say hello in French.", max_tokens=16)
            print(f"infer: {result.text!r} ({result.usage.output_tokens} tokens out)")
        finally:
            client.release_allocation(allocation.id)

        with client.allocate(model=MODEL) as lease:
            leased_id = lease.id
            result = lease.infer("Summarise: GPUs are rented by the hour.", max_tokens=16)
            print(f"lease {leased_id}: {result.text!r} (request {result.request_id})")

        for allocation_id in (allocation.id, leased_id):
            status = client.get_allocation(allocation_id).status
            print(f"{allocation_id} is now {status.value}")
    if emulator is not None:
        print(f"allocations left on the emulator: {len(emulator.live_allocations())}")
    print(f"allocations the client could not release: {len(client.orphans())}")


if __name__ == "__main__":
    main()
