"""What the SDK costs on top of raw httpx: per call, and at import.

Run ``python bench/client_overhead.py``. Two measurements, each a ratio against httpx:

* **Per call.** ``AsyncHostedAI.infer`` against a raw ``httpx.AsyncClient`` doing the same
  POST (same headers, the API key included, the same JSON body) and decoding the JSON
  answer, both over the emulator's in-process async transport, so that no socket noise
  drowns the difference. Calls are timed one by one in rounds that alternate between the
  two (and which goes first), so that drift on a noisy machine hits both alike; each figure
  is the median call. Target: a ratio of at most 1.15.
* **Import.** The wall time of a fresh ``python -c "import hostedai_harpoon"`` against
  ``python -c "import httpx"``, alternating, median of the runs. Target: at most 1.35.
  Both run with their bytecode cached, as an installed package has it: the children write
  and read it under a temporary ``PYTHONPYCACHEPREFIX`` (after one warm-up import each),
  whatever ``PYTHONDONTWRITEBYTECODE`` says, and the source tree stays clean.

Prints PASS or FAIL for each; the exit status is 1 when a target is missed.
"""

from __future__ import annotations

import asyncio
import gc
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable

import hostedai_harpoon as harpoon
from hostedai_harpoon._benchmarks import record
from hostedai_harpoon.testing import Emulator

CALL_ROUNDS = 60
CALLS_PER_ROUND = 40
WARMUP_CALLS = 300
IMPORT_RUNS = 21
CALL_TARGET = 1.15
IMPORT_TARGET = 1.35

BASE_URL = "http://127.0.0.1:8080"
API_KEY = "bench-key"
MODEL = "gemma-3-270m"
PROMPT = "Summarise the incident report in three sentences."
MAX_TOKENS = 32

Call = Callable[[], Awaitable[object]]


async def build_calls(emulator: Emulator) -> tuple[Call, Call, Callable[[], Awaitable[None]]]:
    """The SDK call and the raw one, ready to run, and what closes them."""
    sdk_http = emulator.async_http_client()
    raw_http = emulator.async_http_client()
    client = harpoon.AsyncHostedAI(BASE_URL, API_KEY, http_client=sdk_http)
    allocation = await client.create_allocation(model=MODEL)
    allocation_id = allocation.id

    url = f"{BASE_URL}/v1/inference"
    # What the SDK sends: accept, user-agent, authorization.
    headers = {**client._planner.headers, "authorization": f"Bearer {API_KEY}"}
    payload = {"allocation_id": allocation_id, "prompt": PROMPT, "max_tokens": MAX_TOKENS}

    async def sdk() -> object:
        return await client.infer(allocation_id, PROMPT, max_tokens=MAX_TOKENS)

    async def raw() -> object:
        response = await raw_http.post(url, json=payload, headers=headers)
        response.raise_for_status()
        return response.json()

    async def close() -> None:
        await client.aclose()
        await sdk_http.aclose()
        await raw_http.aclose()

    return sdk, raw, close


async def time_calls(call: Call, count: int, into: list[float]) -> None:
    clock = time.perf_counter
    for _ in range(count):
        started = clock()
        await call()
        into.append(clock() - started)


async def measure_calls() -> tuple[float, float]:
    """Median seconds per call: (SDK, raw httpx)."""
    emulator = Emulator()
    sdk, raw, close = await build_calls(emulator)
    try:
        scratch: list[float] = []
        for _ in range(WARMUP_CALLS // 2):
            await time_calls(sdk, 1, scratch)
            await time_calls(raw, 1, scratch)
        sdk_times: list[float] = []
        raw_times: list[float] = []
        gc.collect()
        gc.disable()  # a collection landing in one side's round would skew it
        try:
            for round_number in range(CALL_ROUNDS):
                order = [(sdk, sdk_times), (raw, raw_times)]
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
        return statistics.median(sdk_times), statistics.median(raw_times)
    finally:
        await close()


def time_import(module: str, env: dict[str, str]) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", f"import {module}"], check=True, env=env)
    return time.perf_counter() - started


def measure_imports() -> tuple[float, float]:
    """Median wall seconds of a fresh interpreter importing: (hostedai_harpoon, httpx)."""
    with tempfile.TemporaryDirectory(prefix="harpoon-bench-pyc-") as pycache:
        env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        env["PYTHONPYCACHEPREFIX"] = pycache
        for module in ("hostedai_harpoon", "httpx"):  # write the bytecode, warm the file cache
            time_import(module, env)
        ours: list[float] = []
        theirs: list[float] = []
        for run in range(IMPORT_RUNS):
            pair = [("hostedai_harpoon", ours), ("httpx", theirs)]
            if run % 2:
                pair.reverse()
            for module, into in pair:
                into.append(time_import(module, env))
    return statistics.median(ours), statistics.median(theirs)


def verdict(ratio: float, target: float) -> str:
    return "PASS" if ratio <= target else "FAIL"


def main() -> int:
    sdk, raw = asyncio.run(measure_calls())
    call_ratio = sdk / raw
    print(
        f"infer per call    AsyncHostedAI {sdk * 1e6:8.1f} us   raw httpx {raw * 1e6:8.1f} us   "
        f"ratio {call_ratio:.3f} (target <= {CALL_TARGET})  {verdict(call_ratio, CALL_TARGET)}"
    )
    record(
        "infer per call: AsyncHostedAI",
        call_ratio,
        baseline="raw httpx.AsyncClient, the same request (median call)",
        target=f"<= {CALL_TARGET}",
        passed=call_ratio <= CALL_TARGET,
    )
    ours, theirs = measure_imports()
    import_ratio = ours / theirs
    print(
        f"import            hostedai_harpoon {ours * 1e3:6.1f} ms   httpx {theirs * 1e3:6.1f} ms"
        f"   ratio {import_ratio:.3f} (target <= {IMPORT_TARGET})  "
        f"{verdict(import_ratio, IMPORT_TARGET)}"
    )
    record(
        "import hostedai_harpoon",
        import_ratio,
        baseline="import httpx, fresh interpreter (median run)",
        target=f"<= {IMPORT_TARGET}",
        passed=import_ratio <= IMPORT_TARGET,
    )
    return 0 if call_ratio <= CALL_TARGET and import_ratio <= IMPORT_TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
