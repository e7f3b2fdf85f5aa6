"""Per-call overhead of the ``gpuaas`` dialect against ``v1``, in the same run.

Run ``python bench/dialects.py``. One warm lease on each dialect's emulator (in-process
async transport, no sockets), both reaching their model with the OpenAI-compatible protocol
(``inference="openai"``: the pod's vLLM server on gpuaas, the allocation's endpoint on v1),
so that what differs is only what the control plane's dialect adds to a call. Calls are
timed one by one in rounds alternating between the two (and which goes first); each figure
is the median call. Target: gpuaas / v1 at most 1.05.

Prints PASS or FAIL; the exit status is 1 when the target is missed.
"""

from __future__ import annotations

import asyncio
import gc
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

import hostedai_harpoon as harpoon
from hostedai_harpoon._benchmarks import record
from hostedai_harpoon.testing import Emulator

ROUNDS = 60
CALLS_PER_ROUND = 40
WARMUP_CALLS = 300
TARGET = 1.05
PROMPT = "Summarise the incident report in three sentences."

Call = Callable[[], Awaitable[object]]


async def time_calls(call: Call, count: int, into: list[float]) -> None:
    clock = time.perf_counter
    for _ in range(count):
        started = clock()
        await call()
        into.append(clock() - started)


async def measure(ledger: str) -> tuple[float, float]:
    """Median seconds per call on a warm lease: (gpuaas, v1)."""
    v1_emu, gpuaas_emu = Emulator(), Emulator(dialect="gpuaas")
    v1 = harpoon.AsyncHostedAI(
        "http://127.0.0.1:8080", "bench-key", http_client=v1_emu.async_http_client()
    )
    gpuaas = harpoon.AsyncHostedAI(
        "http://127.0.0.1:8080",
        "bench-key",
        dialect="gpuaas",
        team_id="team-bench",
        ledger_dir=ledger,
        http_client=gpuaas_emu.async_http_client(),
    )
    async with (
        v1,
        gpuaas,
        v1.allocate("gemma-3-270m", inference="openai") as v1_lease,
        gpuaas.allocate("gemma-3-270m", inference="openai") as gpuaas_lease,
    ):

        async def on_v1() -> object:
            return await v1_lease.infer(PROMPT, max_tokens=32)

        async def on_gpuaas() -> object:
            return await gpuaas_lease.infer(PROMPT, max_tokens=32)

        scratch: list[float] = []
        for _ in range(WARMUP_CALLS // 2):
            await time_calls(on_v1, 1, scratch)
            await time_calls(on_gpuaas, 1, scratch)
        v1_times: list[float] = []
        gpuaas_times: list[float] = []
        gc.collect()
        gc.disable()  # a collection landing in one side's round would skew it
        try:
            for round_number in range(ROUNDS):
                order = [(on_gpuaas, gpuaas_times), (on_v1, v1_times)]
                if round_number % 2:
                    order.reverse()
                for call, into in order:
                    await time_calls(call, CALLS_PER_ROUND, into)
                if round_number % 10 == 9:
                    gc.enable()
                    gc.collect()
                    gc.disable()
        finally:
            gc.enable()
    return statistics.median(gpuaas_times), statistics.median(v1_times)


def main() -> int:
    with tempfile.TemporaryDirectory() as ledger:
        gpuaas, v1 = asyncio.run(measure(ledger))
    ratio = gpuaas / v1
    passed = ratio <= TARGET
    print(f"per call on a warm lease: gpuaas {gpuaas * 1e6:.0f} us, v1 {v1 * 1e6:.0f} us")
    print(f"gpuaas / v1: {ratio:.3f} (target <= {TARGET}) {'PASS' if passed else 'FAIL'}")
    record(
        "gpuaas dialect, per call on a warm lease",
        ratio,
        baseline="v1 dialect, the same call (openai inference), same run",
        target=f"<= {TARGET}",
        passed=passed,
    )
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
