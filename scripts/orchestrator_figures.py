"""The Orchestrator's figures under contention (issues #15 and #20), over TCP and in-process.

Run ``python scripts/orchestrator_figures.py [storm load costs bursts budgets caps]`` (all by
default). Each section prints one line per scenario:

- ``storm``: concurrent ``process()`` calls against a faulty emulator (the default pool,
  and a pool of 2 GPUs with 100, 600 and 1,000 calls): allocate requests, outcomes, time;
- ``load``: 1,000 calls on a pool with room for 2 allocations, faults, TCP: allocate
  requests per second while the pool is full, queue wait p50/p99, live at the end;
- ``costs``: the calls' cost shares plus the idle cost against what a 20-call session spent;
- ``bursts``: allocations leased for 32, 200 and 1,000 concurrent calls on a fresh Orchestrator;
- ``budgets``: spent against a $0.0005 budget for 200 calls at once, 100 calls fired at 95% of
  it, and a session left idle at it;
- ``caps``: peak live allocations on the server (sampled every 2 ms) against
  ``max_allocations`` while inferences fail, releases landing on time or 150 ms late.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import time
from collections import Counter
from collections.abc import Awaitable, Callable

import httpx

import hostedai_harpoon as harpoon
from hostedai_harpoon.orchestrator import _slots
from hostedai_harpoon.testing import Emulator, FaultPlan

WAITS: list[float] = []
_acquire = _slots.Slots.acquire


async def _timed_acquire(self: _slots.Slots, target: harpoon.Target) -> tuple[object, float]:
    started = time.perf_counter()
    try:
        return await _acquire(self, target)
    finally:
        WAITS.append(time.perf_counter() - started)


class Recorder(httpx.AsyncBaseTransport):
    """Records allocate requests (time, status); delays releases' answers if asked."""

    def __init__(self, inner: httpx.AsyncBaseTransport, release_delay: float = 0.0) -> None:
        self.inner = inner
        self.release_delay = release_delay
        self.allocates: list[tuple[float, int]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
        if request.method == "POST" and request.url.path == "/v1/allocate":
            self.allocates.append((time.monotonic(), response.status_code))
        if request.method == "DELETE" and self.release_delay:
            await response.aread()
            await asyncio.sleep(self.release_delay)
        return response

    async def aclose(self) -> None:
        await self.inner.aclose()


def connect(
    emu: Emulator, stack: contextlib.ExitStack, wire: str, release_delay: float = 0.0
) -> tuple[harpoon.AsyncHostedAI, Recorder]:
    inner: httpx.AsyncBaseTransport
    if wire == "tcp":
        url, inner = stack.enter_context(emu.serve()), httpx.AsyncHTTPTransport()
    else:
        url, inner = "http://127.0.0.1:8080", emu.async_transport()
    recorder = Recorder(inner, release_delay)
    http = httpx.AsyncClient(transport=recorder)
    return harpoon.AsyncHostedAI(url, "k", http_client=http, max_retries=2), recorder


async def storm() -> None:
    scenarios = [
        ("default pool, error 10%, drops 3%", 150, None),
        ("2 GPUs, error 5%", 100, 2),
        ("2 GPUs, error 5%", 600, 2),
        ("2 GPUs, error 5%", 1000, 2),
    ]
    for label, calls, gpus in scenarios:
        if gpus is None:
            emu = Emulator(faults=FaultPlan(error_rate=0.1, drop_rate=0.03, seed=5))
        else:
            emu = Emulator(
                {"gpu-pool-1": gpus}, faults=FaultPlan(error_rate=0.05, seed=3), latency_scale=0.02
            )
        with contextlib.ExitStack() as stack:
            client, recorder = connect(emu, stack, "tcp")
            started = time.monotonic()
            async with client, harpoon.Orchestrator(client) as orch:
                outcomes = await asyncio.gather(
                    *(orch.process(f"Hi there {i}") for i in range(calls)), return_exceptions=True
                )
            seconds = time.monotonic() - started
        kinds = Counter(type(outcome).__name__ for outcome in outcomes)
        print(
            f"[storm] {label}, {calls} calls: {dict(kinds)} in {seconds:.1f} s; "
            f"{len(recorder.allocates)} allocate requests; "
            f"live at end {len(emu.live_allocations())}"
        )


async def load() -> None:
    WAITS.clear()
    emu = Emulator({"gpu-pool-1": 2}, faults=FaultPlan(error_rate=0.05, seed=3), latency_scale=0.02)
    with contextlib.ExitStack() as stack:
        client, recorder = connect(emu, stack, "tcp")
        started = time.monotonic()
        async with client, harpoon.Orchestrator(client) as orch:
            outcomes = await asyncio.gather(
                *(orch.process(f"Hi there {i}") for i in range(1000)), return_exceptions=True
            )
        seconds = time.monotonic() - started
    kinds = Counter(type(outcome).__name__ for outcome in outcomes)
    refused = [at for at, status in recorder.allocates if status == 503]
    span = refused[-1] - refused[0] if len(refused) > 1 else 0.0
    waits = sorted(WAITS)
    p99 = waits[int(0.99 * len(waits))] if waits else 0.0
    print(
        f"[load] 1,000 calls, pool room 2, TCP: {dict(kinds)} in {seconds:.1f} s; "
        f"{len(recorder.allocates)} allocate requests, {len(refused)} refused (503) over "
        f"{span:.1f} s = {len(refused) / max(span, 1e-9):.2f}/s while full; queue wait p50 "
        f"{statistics.median(waits) * 1000 if waits else 0:.0f} ms, p99 {p99 * 1000:.0f} ms; "
        f"live at end {len(emu.live_allocations())}"
    )


async def costs() -> None:
    for wire in ("in-process", "tcp"):
        emu = Emulator(latency_scale=0.05)
        with contextlib.ExitStack() as stack:
            client, _ = connect(emu, stack, wire)
            orch = harpoon.Orchestrator(client, targets=["gemma-3-270m"])
            async with client, orch, orch.allocate() as session:
                routed = await asyncio.gather(*(session.infer(f"Hi {i}") for i in range(20)))
        shares = sum(r.cost for r in routed)
        print(
            f"[costs] {wire}: sum(cost) + idle = ${shares + session.idle_cost:.7f}, spent "
            f"${session.spent:.7f} (ratio {(shares + session.idle_cost) / session.spent:.4f})"
        )


async def bursts() -> None:
    for wire in ("in-process", "tcp"):
        for calls in (32, 200, 1000):
            emu = Emulator({"gpu-pool-1": 64})
            with contextlib.ExitStack() as stack:
                client, _ = connect(emu, stack, wire)
                async with client, harpoon.Orchestrator(client) as orch:
                    outcomes = await asyncio.gather(
                        *(orch.process("Hi there") for _ in range(calls)), return_exceptions=True
                    )
            answered = sum(isinstance(outcome, harpoon.RoutedResult) for outcome in outcomes)
            print(
                f"[bursts] {wire}, {calls} calls: {len(emu.allocations())} allocations leased, "
                f"{answered} answered"
            )


async def budgets() -> None:
    budget = 0.0005
    for scenario in ("200 at once", "100 at 95%", "idle 5 s at the budget"):
        emu = Emulator(latency_scale=0.02)
        with contextlib.ExitStack() as stack:
            client, _ = connect(emu, stack, "tcp")
            orch = harpoon.Orchestrator(client)
            async with client, orch, orch.allocate(budget=budget) as session:
                if scenario == "200 at once":
                    await asyncio.gather(
                        *(session.infer("Hi there") for _ in range(200)),
                        return_exceptions=True,
                    )
                else:
                    with contextlib.suppress(harpoon.BudgetExceededError):
                        while session.spent < 0.95 * budget:
                            await session.infer("Hi there")
                    if scenario == "100 at 95%":
                        await asyncio.gather(
                            *(session.infer("Hi there") for _ in range(100)),
                            return_exceptions=True,
                        )
                    else:
                        await asyncio.sleep(5.0)
        print(f"[budgets] {scenario}: spent {session.spent / budget:.3f} of the budget")


async def caps() -> None:
    for cap, rate, delay in ((3, 0.2, 0.0), (3, 0.2, 0.15), (1, 1 / 3, 0.0)):
        failing = FaultPlan(error_rate=rate, seed=11, paths=[("POST", "/v1/inference")])
        emu = Emulator(faults=failing)
        peak = 0

        async def sample(emu: Emulator = emu) -> None:
            nonlocal peak
            while True:
                peak = max(peak, len(emu.live_allocations()))
                await asyncio.sleep(0.002)

        one_each = harpoon.Target("gemma-3-270m", tier="small", max_concurrency=1)
        with contextlib.ExitStack() as stack:
            client, _ = connect(emu, stack, "tcp", release_delay=delay)
            async with (
                client,
                harpoon.Orchestrator(client, targets=[one_each], max_allocations=cap) as orch,
            ):
                sampler = asyncio.create_task(sample())
                await asyncio.gather(
                    *(orch.process("Hi") for _ in range(100)), return_exceptions=True
                )
                sampler.cancel()
        print(
            f"[caps] cap {cap}, {rate:.0%} of inferences failing, releases {delay * 1000:.0f} ms "
            f"late: peak live {peak}, live at end {len(emu.live_allocations())}"
        )


SECTIONS: dict[str, Callable[[], Awaitable[None]]] = {
    "storm": storm,
    "load": load,
    "costs": costs,
    "bursts": bursts,
    "budgets": budgets,
    "caps": caps,
}


async def main(names: list[str]) -> None:
    _slots.Slots.acquire = _timed_acquire  # type: ignore[assignment,method-assign]
    for name in names or list(SECTIONS):
        if name not in SECTIONS:
            raise SystemExit(
                f"unknown section {name!r}; the sections: {json.dumps(list(SECTIONS))}"
            )
        await SECTIONS[name]()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
