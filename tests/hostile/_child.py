"""Run one SDK call against the hostile server in a fresh process and report how it ended.

Usage: ``python _child.py '<json case>'``; prints one JSON object: the exception's class
name and message (``null`` when the call returned), its class hierarchy, the seconds the
call took, how much the process's peak resident set (``VmHWM``) grew during the call and the
ids of the client's orphans. The child's address space is capped at 2 GiB.

The call is ``health``, ``stream`` (v1: by allocation id) or ``lease`` (enter a lease, infer
once, or stream with ``"stream": true``, and leave); ``"dialect": "gpuaas"`` makes the
client one of hosted·ai's platform, of team ``team_id`` with its ledger in ``ledger_dir``.
"""

from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from typing import Any

import httpx

import hostedai_harpoon as harpoon

_ADDRESS_SPACE = 2 << 30


def peak_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    raise RuntimeError("no VmHWM in /proc/self/status")


def client_options(case: dict[str, Any]) -> dict[str, Any]:
    options: dict[str, Any] = {"api_key": "hostile-test-key", "max_retries": 0}
    options["base_url"] = case["base_url"]
    if "deadline" in case:
        options["deadline"] = case["deadline"]
    if "read_timeout" in case:
        options["timeout"] = httpx.Timeout(30.0, read=case["read_timeout"])
    if case.get("dialect") == "gpuaas":
        options |= {"dialect": "gpuaas", "team_id": case["team_id"]}
        options["ledger_dir"] = case["ledger_dir"]
    return options


LEASE: dict[str, Any] = {
    "model": "gemma-3-270m",
    "ready_timeout": 3,
    "capacity_timeout": 3,
    "release_timeout": 3,
}
ORPHANS: list[str | None] = []


def run_sync(case: dict[str, Any]) -> None:
    with harpoon.HostedAI(**client_options(case)) as client:
        try:
            if case["call"] == "stream":
                with client.stream("alloc-1", "hello") as chunks:
                    for _ in chunks:
                        pass
            elif case["call"] == "lease":
                with client.allocate(**LEASE) as lease:
                    if case.get("stream"):
                        with lease.stream("hello") as chunks:
                            for _ in chunks:
                                pass
                    else:
                        lease.infer("hello")
            else:
                client.health()
        finally:
            ORPHANS.extend(orphan.allocation_id for orphan in client.orphans())


async def run_async(case: dict[str, Any]) -> None:
    async with harpoon.AsyncHostedAI(**client_options(case)) as client:
        try:
            if case["call"] == "stream":
                async with client.stream("alloc-1", "hello") as chunks:
                    async for _ in chunks:
                        pass
            elif case["call"] == "lease":
                async with client.allocate(**LEASE) as lease:
                    if case.get("stream"):
                        async with lease.stream("hello") as achunks:
                            async for _ in achunks:
                                pass
                    else:
                        await lease.infer("hello")
            else:
                await client.health()
        finally:
            ORPHANS.extend(orphan.allocation_id for orphan in client.orphans())


def main() -> None:
    # A client that holds a hostile body whole must fail here, not take the machine with it.
    resource.setrlimit(resource.RLIMIT_AS, (_ADDRESS_SPACE, _ADDRESS_SPACE))
    case = json.loads(sys.argv[1])
    before = peak_kib()
    started = time.monotonic()
    error: BaseException | None = None
    try:
        if case["flavor"] == "sync":
            run_sync(case)
        else:
            asyncio.run(run_async(case))
    except Exception as exc:
        error = exc
    seconds = time.monotonic() - started
    print(
        json.dumps(
            {
                "error": None if error is None else type(error).__name__,
                "classes": [] if error is None else [c.__name__ for c in type(error).__mro__],
                "message": None if error is None else str(error),
                "seconds": seconds,
                "growth_mib": (peak_kib() - before) / 1024,
                "orphans": ORPHANS,
            }
        )
    )


if __name__ == "__main__":
    main()
