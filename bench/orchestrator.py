"""What the Orchestrator costs on top of raw httpx, per call on a warm allocation.

Run ``python bench/orchestrator.py``. Three calls, all over the emulator's in-process async
transport so that no socket noise drowns the difference:

* ``orchestrator.process(prompt)``: routed by the default ``ComplexityPolicy`` over the
  live state, run on the warm allocation it keeps, with the live state updated after;
* ``session.infer(prompt)``: the same inside ``async with orchestrator.allocate(...)``, on
  the session's prewarmed allocation;
* raw httpx: an ``httpx.AsyncClient`` POSTing the same single inference request (same
  allocation, prompt, ``max_tokens`` and headers) and decoding the JSON answer.

Calls are timed one by one in rounds that rotate which side goes first, so that drift on a
noisy machine hits every side alike; each figure is the median call. Prints each
orchestrator call's ratio to raw httpx. Target: at most 1.20 each; the exit status is 1
when one is missed. For context it also prints the ratios of ``lease.infer()`` and
``client.infer()`` on the same kind of allocation: the floor the orchestrator builds on.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
from collections.abc import Awaitable, Callable

import httpx

import hostedai_harpoon as harpoon
from hostedai_harpoon._benchmarks import record
from hostedai_harpoon.testing import Emulator

ROUNDS = 60
BASELINE = "raw httpx.AsyncClient, one inference request (median call)"
CALLS_PER_ROUND = 30
WARMUP_CALLS = 300
TARGET = 1.20

BASE_URL = "http://127.0.0.1:8080"
API_KEY = "bench-key"
PROMPT = "Summarise the incident report in three sentences."  # routed to the small tier
MAX_TOKENS = 32
USER_AGENT = f"hostedai-harpoon/{harpoon.__version__} python-httpx/{httpx.__version__}"

Call = Callable[[], Awaitable[object]]


async def time_calls(call: Call, count: int, into: list[float]) -> None:
    clock = time.perf_counter
    for _ in range(count):
        started = clock()
        await call()
        into.append(clock() - started)


async def measure(emulator: Emulator) -> dict[str, float]:
    """Median seconds per call of each side."""
    sdk_http = emulator.async_http_client()
    raw_http = emulator.async_http_client()
    client = harpoon.AsyncHostedAI(BASE_URL, API_KEY, http_client=sdk_http)
    async with (
        harpoon.Orchestrator(client) as orchestrator,
        orchestrator.allocate(prewarm=["gemma-3-270m"]) as session,
        client.allocate("gemma-3-270m") as lease,
    ):
        warm = await orchestrator.process(PROMPT, max_tokens=MAX_TOKENS)
        assert warm.target.name == "gemma-3-270m"
        payload = {
            "allocation_id": warm.result.allocation_id,
            "prompt": PROMPT,
            "max_tokens": MAX_TOKENS,
        }
        headers = {  # what the SDK sends with it
            "accept": "application/json",
            "user-agent": USER_AGENT,
            "authorization": f"Bearer {API_KEY}",
        }

        async def process() -> object:
            return await orchestrator.process(PROMPT, max_tokens=MAX_TOKENS)

        async def infer() -> object:
            return await session.infer(PROMPT, max_tokens=MAX_TOKENS)

        async def raw() -> object:
            response = await raw_http.post(
                f"{BASE_URL}/v1/inference", json=payload, headers=headers
            )
            response.raise_for_status()
            return response.json()

        async def lease_infer() -> object:
            return await lease.infer(PROMPT, max_tokens=MAX_TOKENS)

        async def client_infer() -> object:
            return await client.infer(lease.id, PROMPT, max_tokens=MAX_TOKENS)

        sides: dict[str, Call] = {
            "process()": process,
            "session.infer()": infer,
            "httpx": raw,
            "lease.infer()": lease_infer,
            "client.infer()": client_infer,
        }
        times: dict[str, list[float]] = {name: [] for name in sides}
        scratch: list[float] = []
        for _ in range(WARMUP_CALLS // len(sides)):
            for call in sides.values():
                await time_calls(call, 1, scratch)
        gc.collect()
        gc.disable()  # a collection landing in one side's round would skew it
        try:
            names = list(sides)
            for round_number in range(ROUNDS):
                shift = round_number % len(names)
                for name in names[shift:] + names[:shift]:
                    await time_calls(sides[name], CALLS_PER_ROUND, times[name])
                if round_number % 10 == 9:
                    gc.enable()
                    gc.collect()
                    gc.disable()
        finally:
            gc.enable()
    await raw_http.aclose()
    await sdk_http.aclose()
    assert not emulator.live_allocations(), "the orchestrator left an allocation behind"
    return {name: statistics.median(values) for name, values in times.items()}


def main() -> int:
    medians = asyncio.run(measure(Emulator()))
    baseline = medians["httpx"]
    print(f"raw httpx, one inference request: {baseline * 1e6:8.1f} us (median)")
    failed = False
    for name in ("process()", "session.infer()"):
        ratio = medians[name] / baseline
        verdict = "PASS" if ratio <= TARGET else "FAIL"
        failed |= verdict == "FAIL"
        record(
            f"orchestrator {name}",
            ratio,
            baseline=BASELINE,
            target=f"<= {TARGET:.2f}",
            passed=verdict == "PASS",
        )
        print(
            f"{name:16} on a warm allocation: {medians[name] * 1e6:8.1f} us, "
            f"ratio {ratio:.3f} (target <= {TARGET:.2f}) {verdict}"
        )
    for name in ("lease.infer()", "client.infer()"):
        ratio = medians[name] / baseline
        record(name, ratio, baseline=BASELINE)
        print(f"{name:16} for context:       {medians[name] * 1e6:8.1f} us, ratio {ratio:.3f}")
    print(f"httpx {httpx.__version__}, Python {sys.version.split()[0]}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
