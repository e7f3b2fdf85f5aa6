"""What a lease costs on top of raw httpx: allocate -> infer -> release cycles over TCP.

Run ``python bench/lease_cycle.py``. One emulator (a pool of 100,000 GPUs, so capacity never
makes anyone wait) is served over TCP on 127.0.0.1 by uvicorn in a background thread. Two
sides run the same cycle against it, each with its own ``httpx.AsyncClient`` built with the
same connection limits and keep-alive:

* **SDK:** ``async with client.allocate(model=...) as lease: await lease.infer(...)`` on an
  ``AsyncHostedAI`` (the lease creates the allocation, sees it ``ready``, starts its
  keepalive task, runs the inference, and releases on the way out);
* **raw httpx:** ``POST /v1/allocate`` (the same headers, ``Idempotency-Key`` and JSON body)
  and its JSON decoded, ``POST /v1/inference`` and its JSON decoded, ``DELETE
  /v1/allocate/{id}``.

At concurrency 1, 10 and 100 (that many tasks each running cycles back to back), rounds of
about half a second alternate between the sides (and which goes first); the figure per side
is the median round's throughput in cycles per second. ratio = raw throughput / SDK
throughput, that is how much slower the SDK is. Target: at most 1.25 at every concurrency.
Prints PASS or FAIL for each; the exit status is 1 when a target is missed.

Read the ratio for what it is: a ratio of end-to-end throughput, not of what the SDK adds.
Most of a cycle's time is spent where both sides spend it alike: in httpx and the socket
layer on the client's end, and in uvicorn and the emulator on the server's end, which shares
this process (and its GIL) and the machine's two cores with the client. Both dilute the
SDK's own cost, so the ratio sits nearer 1 than that cost alone would put it. The second
line per concurrency narrows it down: the CPU time per cycle of the client's event-loop
thread alone (``time.thread_time``; the server runs in its own thread), for each side, and
their ratio, with the rest of the process's CPU time (the server's) beside it. That line is
informative, with no target; it still includes httpx's share, the same on both sides.

Concurrency 10 is the closest to the target. The lease releases in a task of its own, so
that a cancellation cannot cut the release short. Starting that task and waking up after it
take a few turns of the event loop, and meanwhile the connection sits idle in the pool.
httpcore checks every idle connection's socket (two system calls) on each request and
response, so those idle spells cost CPU across the whole pool: a raw client that put a
single ``asyncio.sleep(0)`` between its requests would pay much the same.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import httpx

import hostedai_harpoon as harpoon
from hostedai_harpoon._benchmarks import record
from hostedai_harpoon.testing import Emulator

CONCURRENCIES = (1, 10, 100)
ROUNDS = 9  # per side and concurrency
ROUND_SECONDS = 0.5
WARMUP_SECONDS = 0.5
TARGET = 1.25

API_KEY = "bench-key"
MODEL = "gemma-3-270m"
POOL_GPUS = 100_000
PROMPT = "Summarise the incident report in three sentences."
MAX_TOKENS = 16
TTL_SECONDS = 120  # the lease's default TTL, sent by both sides
TIMEOUT = 60.0

Cycle = Callable[[], Awaitable[None]]


def http_client() -> httpx.AsyncClient:
    """The connection pool each side gets: enough kept-alive connections for every task."""
    limits = httpx.Limits(
        max_connections=max(CONCURRENCIES),
        max_keepalive_connections=max(CONCURRENCIES),
        keepalive_expiry=30.0,
    )
    return httpx.AsyncClient(limits=limits, timeout=TIMEOUT, follow_redirects=False)


def sdk_cycle(client: harpoon.AsyncHostedAI) -> Cycle:
    """One lease, one inference, released."""

    async def cycle() -> None:
        async with client.allocate(model=MODEL, ttl=TTL_SECONDS) as lease:
            await lease.infer(PROMPT, max_tokens=MAX_TOKENS)

    return cycle


def raw_cycle(http: httpx.AsyncClient, base_url: str, headers: dict[str, str]) -> Cycle:
    """The same three requests by hand, with the same headers and bodies as the SDK's."""
    allocate_url = f"{base_url}/v1/allocate"
    inference_url = f"{base_url}/v1/inference"
    create_body = {"model": MODEL, "gpu_count": 1, "ttl_seconds": TTL_SECONDS}

    async def cycle() -> None:
        key = f"raw-{uuid.uuid4().hex}"
        created = await http.post(
            allocate_url, json=create_body, headers={**headers, "idempotency-key": key}
        )
        created.raise_for_status()
        allocation = created.json()
        if allocation["status"] != "ready":
            raise RuntimeError(f"allocation is {allocation['status']}")
        allocation_id = allocation["id"]
        inferred = await http.post(
            inference_url,
            json={"allocation_id": allocation_id, "prompt": PROMPT, "max_tokens": MAX_TOKENS},
            headers=headers,
        )
        inferred.raise_for_status()
        inferred.json()
        released = await http.delete(f"{allocate_url}/{allocation_id}", headers=headers)
        released.raise_for_status()

    return cycle


async def run_round(
    cycle: Cycle, concurrency: int, seconds: float
) -> tuple[int, float, float, float]:
    """Run ``concurrency`` tasks doing cycles back to back for about ``seconds``.

    Returns the cycles completed, the wall seconds, the CPU seconds of this thread (the
    client's event loop) and those of the rest of the process (the server's thread).
    """
    clock = time.perf_counter
    stop_at = clock() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        while clock() < stop_at:
            await cycle()
            done += 1

    thread_started, process_started = time.thread_time(), time.process_time()
    started = clock()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = clock() - started
    client_cpu = time.thread_time() - thread_started
    return done, wall, client_cpu, time.process_time() - process_started - client_cpu


class Side:
    """One side's rounds at one concurrency: throughputs, and CPU per cycle on each end."""

    def __init__(self, cycle: Cycle) -> None:
        self.cycle = cycle
        self.throughputs: list[float] = []
        self.client_cpu: list[float] = []  # seconds per cycle
        self.server_cpu: list[float] = []

    async def run(self, concurrency: int) -> None:
        done, wall, client_cpu, server_cpu = await run_round(self.cycle, concurrency, ROUND_SECONDS)
        self.throughputs.append(done / wall)
        self.client_cpu.append(client_cpu / done)
        self.server_cpu.append(server_cpu / done)


async def measure(
    emulator: Emulator, sdk: Cycle, raw: Cycle, concurrency: int
) -> tuple[Side, Side]:
    """Alternating rounds of both sides at one concurrency."""
    sdk_side, raw_side = Side(sdk), Side(raw)
    for side in (sdk_side, raw_side):  # open the connections, warm the caches
        await run_round(side.cycle, concurrency, WARMUP_SECONDS)
    for round_number in range(ROUNDS):
        order = [sdk_side, raw_side]
        if round_number % 2:
            order.reverse()
        for side in order:
            # Every lease is released by now: forget them, and the request log, so that the
            # server's work per cycle stays the same from round to round.
            emulator.reset()
            gc.collect()
            gc.disable()  # a collection landing in one side's round would skew it
            try:
                await side.run(concurrency)
            finally:
                gc.enable()
    return sdk_side, raw_side


async def bench(emulator: Emulator, base_url: str) -> list[tuple[int, Side, Side]]:
    sdk_http = http_client()
    raw_http = http_client()
    client = harpoon.AsyncHostedAI(base_url, API_KEY, http_client=sdk_http)
    headers = {  # what the SDK sends
        **client._planner.headers,
        "authorization": f"Bearer {API_KEY}",
        "content-type": "application/json",
    }
    results = []
    try:
        for concurrency in CONCURRENCIES:
            sdk_side, raw_side = await measure(
                emulator, sdk_cycle(client), raw_cycle(raw_http, base_url, headers), concurrency
            )
            results.append((concurrency, sdk_side, raw_side))
    finally:
        await client.aclose()
        await sdk_http.aclose()
        await raw_http.aclose()
    if emulator.live_allocations():
        raise RuntimeError("the bench leaked allocations")
    return results


def verdict(ratio: float) -> str:
    return "PASS" if ratio <= TARGET else "FAIL"


def main() -> int:
    emulator = Emulator(pools={"bench-pool": POOL_GPUS})
    with emulator.serve() as base_url:
        results = asyncio.run(bench(emulator, base_url))
    ok = True
    for concurrency, sdk, raw in results:
        sdk_rate = statistics.median(sdk.throughputs)
        raw_rate = statistics.median(raw.throughputs)
        ratio = raw_rate / sdk_rate
        ok = ok and ratio <= TARGET
        print(
            f"concurrency {concurrency:3d}   AsyncHostedAI {sdk_rate:7.1f} cycles/s   "
            f"raw httpx {raw_rate:7.1f} cycles/s   ratio {ratio:.3f} (target <= {TARGET})  "
            f"{verdict(ratio)}"
        )
        record(
            f"lease cycle, concurrency {concurrency}",
            ratio,
            baseline="raw httpx cycles/s (raw / SDK: how much slower)",
            target=f"<= {TARGET}",
            passed=ratio <= TARGET,
        )
        sdk_cpu = statistics.median(sdk.client_cpu)
        raw_cpu = statistics.median(raw.client_cpu)
        print(
            f"  CPU per cycle, client thread: AsyncHostedAI {sdk_cpu * 1e6:6.0f} us   "
            f"raw httpx {raw_cpu * 1e6:6.0f} us   ratio {sdk_cpu / raw_cpu:.3f}   "
            f"(server thread: {statistics.median(sdk.server_cpu) * 1e6:.0f} us / "
            f"{statistics.median(raw.server_cpu) * 1e6:.0f} us; informative)"
        )
        record(
            f"lease cycle, concurrency {concurrency}: client CPU per cycle",
            sdk_cpu / raw_cpu,
            baseline="raw httpx client-thread CPU per cycle",
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
