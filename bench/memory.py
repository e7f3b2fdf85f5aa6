"""How much memory the SDK keeps as calls pile up: RSS growth over many calls.

Run ``python bench/memory.py``. Two measurements, each in a fresh child process so that one
cannot distort the other, both on the emulator's in-process transports:

* **infer:** 100,000 ``HostedAI.infer`` calls on one allocation. Target: under 5 MiB.
* **leases:** 10,000 ``async with client.allocate(...) as lease: await lease.infer(...)``
  cycles, one after another, with background renewal on. Target: under 5 MiB.

Each child warms up first (so that imports, caches and the first allocations are paid
for), then reports how far its resident set grew over the measured calls: the growth of
the peak (``VmHWM``) and of the current RSS (``VmRSS``), from ``/proc/self/status``. The
figure judged is the peak growth. The emulator logs every exchange and remembers every
allocation and idempotency key; that is its memory, not the SDK's, so it is reset every
``RESET_EVERY`` calls (between leases, none live). Prints PASS or FAIL for each; the exit
status is 1 when a target is missed.
"""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys

import hostedai_harpoon as harpoon
from hostedai_harpoon._benchmarks import record
from hostedai_harpoon.testing import Emulator

BASE_URL = "http://127.0.0.1:8080"
API_KEY = "bench-key"
MODEL = "gemma-3-270m"
INFER_CALLS = 100_000
LEASE_CYCLES = 10_000
WARMUP = 2_000
RESET_EVERY = 1_000
TARGET_MIB = 5.0


def status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def report(before_peak: int, before_rss: int) -> None:
    gc.collect()
    peak = (status_kib("VmHWM") - before_peak) / 1024
    rss = (status_kib("VmRSS") - before_rss) / 1024
    print(f"{peak:.2f} {rss:.2f}")


def run_infer() -> None:
    emulator = Emulator()
    with harpoon.HostedAI(BASE_URL, API_KEY, http_client=emulator.http_client()) as client:

        def calls(count: int) -> None:
            for done in range(0, count, RESET_EVERY):
                emulator.reset()
                allocation_id = client.create_allocation(model=MODEL).id
                for _ in range(min(RESET_EVERY, count - done)):
                    client.infer(allocation_id, "hello", max_tokens=4)

        calls(WARMUP)
        gc.collect()
        before_peak, before_rss = status_kib("VmHWM"), status_kib("VmRSS")
        calls(INFER_CALLS)
        report(before_peak, before_rss)


async def run_leases() -> None:
    emulator = Emulator()
    http = emulator.async_http_client()
    async with harpoon.AsyncHostedAI(BASE_URL, API_KEY, http_client=http) as client:

        async def cycles(count: int) -> None:
            for done in range(count):
                if done % RESET_EVERY == 0:
                    emulator.reset()
                async with client.allocate(model=MODEL, ttl=60, renew_interval=20) as lease:
                    await lease.infer("hello", max_tokens=4)

        await cycles(WARMUP // 4)
        gc.collect()
        before_peak, before_rss = status_kib("VmHWM"), status_kib("VmRSS")
        await cycles(LEASE_CYCLES)
        report(before_peak, before_rss)
    await http.aclose()


def measure(which: str) -> tuple[float, float]:
    """(peak growth, RSS growth) in MiB, measured in a fresh interpreter."""
    out = subprocess.run(
        [sys.executable, __file__, which], check=True, capture_output=True, text=True
    ).stdout.split()
    return float(out[0]), float(out[1])


def main() -> int:
    ok = True
    for which, label in (
        ("infer", f"{INFER_CALLS:,} infer calls"),
        ("leases", f"{LEASE_CYCLES:,} async lease cycles"),
    ):
        peak, rss = measure(which)
        passed = peak < TARGET_MIB
        ok = ok and passed
        record(
            f"{label}: peak RSS growth",
            peak,
            baseline="absolute growth",
            unit="MiB",
            target=f"< {TARGET_MIB} MiB",
            passed=passed,
        )
        print(
            f"{label:<28} peak RSS growth {peak:6.2f} MiB   RSS growth {rss:6.2f} MiB"
            f"   (target < {TARGET_MIB} MiB)  {'PASS' if passed else 'FAIL'}"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1:] == ["infer"]:
        run_infer()
    elif sys.argv[1:] == ["leases"]:
        asyncio.run(run_leases())
    else:
        sys.exit(main())
