"""The Orchestrator against the emulator that ships with hostedai-harpoon: no credentials.

It routes a handful of prompts between a small and a large model, shows a failover when
the large model's server errors, runs a session with a budget and a stream, and ends by
proving that no GPU allocation is left behind.

Run it with the README's demo command, or ``python examples/demo.py`` inside the venv.
"""

from __future__ import annotations

import asyncio
import logging
import time

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, Fault, FaultPlan

BASE_URL = "http://127.0.0.1:8080"  # any URL: the emulator answers in-process, no sockets
PROMPTS = [
    "Hi there!",
    "Translate 'good morning' into Spanish.",
    "Summarise in one line: GPUs are rented by the hour from pools.",
    "Prove step by step that the square root of 2 is irrational, then explain why the "
    "proof fails for the square root of 4.",
    "Design a rate limiter for an API gateway: compare token bucket and sliding window, "
    "and analyse the trade-offs.",
    "What is 17 * 23?",
]
COMPLEX = "Derive the gradient of the softmax cross-entropy loss and explain why it is stable."


def heading(text: str) -> None:
    print(f"\n== {text}")


def short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 3] + "..."


def row(label: str, routed: harpoon.RoutedResult) -> None:
    usage = routed.result.usage
    print(
        f"  {short(label, 34):34}  {routed.target.name:14} {routed.latency * 1000:7.1f} ms "
        f"{usage.input_tokens:4} -> {usage.output_tokens:<4} ${routed.cost:.7f}"
    )
    print(f"  {'':34}  why: {short(routed.decision.reason, 100)}")


async def tour(emu: Emulator) -> None:
    client = harpoon.AsyncHostedAI(
        BASE_URL,
        "demo-key",
        http_client=emu.async_http_client(),
        retry=harpoon.RetryPolicy(max_retries=1, initial_backoff=0.05),
    )
    async with harpoon.Orchestrator(client) as orch:
        heading("orchestrator.process(): each prompt routed to the small or the large model")
        print(f"  {'prompt':34}  {'target':14} {'latency':>10} {'tokens in->out':14} est. cost")
        for prompt in PROMPTS:
            row(prompt, await orch.process(prompt, max_tokens=48))
        warm = orch.snapshot().total.warm_allocations
        print(f"  {len(PROMPTS)} calls ran on {warm} allocations, kept warm for the next calls")

        heading("200 calls at once: single-flight leasing and a FIFO queue on a pool that fills up")
        allocated = len(emu.allocations())
        started = time.perf_counter()
        burst = await asyncio.gather(
            *(orch.infer(f"Hi there, number {i}", max_tokens=16) for i in range(200))
        )
        seconds = time.perf_counter() - started
        leased = len(emu.allocations()) - allocated
        full = sum(e.status == 503 for e in emu.requests_to("POST", "/v1/allocate"))
        print(
            f"  {len(burst)} answered in {seconds * 1000:.0f} ms on {leased} more allocations: "
            "as many as"
        )
        print(
            f"  the pool had room for ({full} allocate requests refused), 8 calls on each at once,"
        )
        print("  the other callers queued, first come first served")
        shares = sum(r.cost for r in burst)
        print(f"  their cost shares add up to ${shares:.7f}: the GPU time they shared")

        heading("Failover: the large model's server answers 503 (an injected fault)")
        emu.faults = FaultPlan(rules=[Fault("error", status=503, path="/v1/inference", times=2)])
        routed = await orch.process(COMPLEX, max_tokens=48)
        emu.faults = None
        print("  (the failed allocation is dropped; the cost counts both attempts)")
        for attempt in routed.attempts:
            outcome = "answered" if attempt.error is None else f"failed: {attempt.error}"
            print(f"  attempt on {attempt.target.name:14} ({attempt.reason}): {short(outcome, 70)}")
        row(COMPLEX, routed)

        heading("A session: a scope of GPU use with a budget, a prewarmed model and a stream")
        async with orch.allocate(prewarm=["qwen3-30b-a3b"], budget=0.05) as session:
            routed = await session.infer(COMPLEX, max_tokens=24)
            row(COMPLEX, routed)
            async with session.stream("Name three uses of a GPU.", max_tokens=12) as chunks:
                print(f"  stream on {chunks.decision.target.name}: ", end="")
                async for chunk in chunks:
                    print(chunk.delta, end="", flush=True)
            print(f"\n  the session spent ${session.spent:.7f} of its $0.05 budget")
        held = len(emu.live_allocations())
        print(f"  after the session, only the orchestrator's warm pool holds GPUs: {held}")

        heading("orchestrator.snapshot(): what it did, per target")
        for name, stats in orch.snapshot().targets.items():
            print(
                f"  {name:14} {stats.requests:2} requests, {stats.failovers} failovers, "
                f"{stats.tokens_out:4} tokens out, {stats.gpu_seconds:6.2f} GPU-s held, "
                f"est. ${stats.cost:.6f}"
            )
        health = await orch.health()
        verdicts = ", ".join(f"{name} {t.verdict}" for name, t in health.targets.items())
        print(f"  health: {health.verdict} (API {health.api and health.api.status}; {verdicts})")
    print(
        f"\nDone. Allocations left on the emulator: {len(emu.live_allocations())}, "
        f"orphans: {len(client.orphans())}"
    )


def main() -> None:
    logging.basicConfig(level=logging.ERROR)
    print(f"hostedai-harpoon {harpoon.__version__}: the Orchestrator on the embedded emulator")
    print("(the emulator answers with deterministic filler words, not a real model;")
    print(" latency is the emulator's simulated inference time plus the SDK's own)")
    asyncio.run(tour(Emulator(latency_scale=0.05)))


if __name__ == "__main__":
    main()
