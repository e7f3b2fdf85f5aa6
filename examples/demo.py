"""A tour of hostedai-harpoon against the emulator that ships with it: no credentials needed.

Run it with the README's demo command, or ``python examples/demo.py`` inside the venv.
"""

from __future__ import annotations

import asyncio
import logging

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, Fault, FaultPlan

BASE_URL = "http://127.0.0.1:8080"  # any URL: the emulator answers in-process, no sockets
PROMPTS = [
    "Hi there!",
    "Summarise this sentence in five words: GPUs are rented by the hour.",
    "Prove step by step that the square root of 2 is irrational, then explain why the "
    "proof fails for the square root of 4. Show every step and justify each inference.",
]


def heading(text: str) -> None:
    print(f"\n== {text}")


async def routed_inference(emu: Emulator) -> None:
    heading("Routing: a policy picks the small or the large model for each prompt")
    policy = harpoon.ComplexityPolicy()
    async with harpoon.AsyncHostedAI(
        BASE_URL, "demo-key", http_client=emu.async_http_client()
    ) as client:
        for prompt in PROMPTS:
            decision = harpoon.route(
                policy, harpoon.RouteRequest(prompt, max_tokens=64), harpoon.DEFAULT_TARGETS
            )
            async with client.allocate(model=decision.target.model) as lease:
                result = await lease.infer(prompt, max_tokens=64)
            print(f"  {prompt[:48]!r:52} -> {decision.target.name}")
            print(f"      why: {decision.reason}")
            print(
                f"      {result.usage.output_tokens} tokens in {result.latency * 1000:.0f} ms "
                f"(server time): {result.text[:60]!r}..."
            )


async def async_stream(emu: Emulator) -> None:
    heading("Async: a lease and a stream, both async context managers")
    async with (
        harpoon.AsyncHostedAI(BASE_URL, "demo-key", http_client=emu.async_http_client()) as client,
        client.allocate(model="qwen3-30b-a3b") as lease,
        lease.stream("List three uses of a GPU.", max_tokens=12) as chunks,
    ):
        print("  ", end="")
        async for chunk in chunks:
            print(chunk.delta, end="", flush=True)
            if chunk.usage is not None:
                usage = chunk.usage
                print(f"\n   ({usage.output_tokens} tokens, finish_reason {chunk.finish_reason})")


async def cancelled_block(emu: Emulator) -> None:
    heading("Cancellation: a task cancelled inside its lease still releases the GPU")
    async with harpoon.AsyncHostedAI(
        BASE_URL, "demo-key", http_client=emu.async_http_client()
    ) as client:
        inside = asyncio.Event()

        async def hold_forever() -> None:
            async with client.allocate(model="qwen3-30b-a3b"):
                inside.set()
                await asyncio.sleep(3600)

        task = asyncio.create_task(hold_forever())
        await inside.wait()
        print(f"  while the task runs, GPUs held: {len(emu.live_allocations())}")
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        print(f"  after cancelling it, GPUs held: {len(emu.live_allocations())}")


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    emu = Emulator(pools={"gpu-pool-1": 8})
    print("hostedai-harpoon", harpoon.__version__, "- against the embedded HostedAI emulator")
    print("(the emulator answers with deterministic filler words, not a real model)")

    with harpoon.HostedAI(BASE_URL, "demo-key", http_client=emu.http_client()) as client:
        heading("The API")
        health = client.health()
        print(f"  health: {health.status} (server {health.version})")
        for pool in client.list_pools():
            print(
                f"  pool {pool.id}: {pool.gpus_free}/{pool.gpus_total} {pool.gpu_type} free, "
                f"models {', '.join(pool.models)}"
            )

        heading("A lease: GPUs for the length of a with-block")
        with client.allocate(model="gemma-3-270m", ttl=120) as lease:
            print(
                f"  allocated {lease.id} ({lease.allocation.gpu_count if lease.allocation else 0}"
                f" GPU), state {lease.state.value}"
            )
            result = lease.infer("Write a haiku about GPUs.", max_tokens=24)
            print(f"  infer -> {result.text!r} (finish_reason: {result.finish_reason})")
            print("  stream -> ", end="")
            with lease.stream("Count to five.", max_tokens=12) as chunks:
                for chunk in chunks:
                    print(chunk.delta, end="", flush=True)
            print()
        print(
            f"  after the block: state {lease.state.value}, GPUs held {len(emu.live_allocations())}"
        )

        heading("An error inside the block does not leak the GPU")
        try:
            with client.allocate(model="gemma-3-270m"):
                raise RuntimeError("your code failed")
        except RuntimeError as exc:
            print(f"  caught {exc!r}; GPUs held: {len(emu.live_allocations())}")

    heading("Resilience: the network drops the answer to an allocate call")
    flaky = Emulator(
        faults=FaultPlan(
            rules=[Fault("drop", method="POST", path="/v1/allocate", times=1, when="after")]
        )
    )
    with harpoon.HostedAI(BASE_URL, "demo-key", http_client=flaky.http_client()) as client:
        allocation = client.create_allocation(model="gemma-3-270m")
        attempts = flaky.requests_to("POST", "/v1/allocate")
        keys = {attempt.idempotency_key for attempt in attempts}
        print("  the server made the allocation, but the answer was lost; the client retried:")
        print(
            f"  {len(attempts)} attempts with {len(keys)} Idempotency-Key -> "
            f"{len(flaky.allocations())} allocation ({allocation.id})"
        )
        client.release_allocation(allocation.id)

    asyncio.run(async_stream(emu))
    asyncio.run(routed_inference(emu))
    asyncio.run(cancelled_block(emu))

    heading("Errors are typed")
    with harpoon.HostedAI(BASE_URL, "demo-key", http_client=emu.http_client()) as client:
        try:
            client.create_allocation(model="no-such-model")
        except harpoon.UnprocessableEntityError as exc:
            print(f"  {type(exc).__name__}: {exc}")
        print(f"  the client's repr never shows the key: {client!r}")

    print(f"\nDone. Allocations still held on the emulator: {len(emu.live_allocations())}")


if __name__ == "__main__":
    main()
