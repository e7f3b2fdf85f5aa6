"""The fleet's counts and live state, shared through Redis, on the same interfaces as the
local ones: ``SharedFleet`` is a ``Fleet``, ``SharedLiveState`` a ``LocalLiveState``.

Nothing here waits on Redis on a call's path. Routing reads the local state with the other
replicas' figures merged in at each sync (``Replica``); a fleet-wide cool-down is a local
deadline; the cap is held as a *share*: each replica owns some places of the fleet's
``max_allocations`` in Redis and leases within them, asking Redis for one more place only
when a lease would go past its share (a lease is seconds of HTTP anyway), and giving back
what it no longer holds.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from typing import Any

import attrs

from .. import AsyncLease, CircuitOpenError, CircuitState, Usage
from ..routing import Target, TargetState
from ._fleet import Fleet, _Count
from ._group import Limits
from ._live import LocalLiveState, Outcome, _Target
from ._redis import Down, Store, _text

__all__ = ["SharedFleet", "SharedLiveState"]

log = logging.getLogger("hostedai_harpoon")

_OPEN = CircuitState.OPEN
# How long an allocation whose release began stays in the fleet's registry: should this
# replica die meanwhile, the others release it again (the API answers 404: no harm).
_RELEASING_KEPT = 60.0


class SharedFleet(Fleet):
    """A ``Fleet`` whose ``max_allocations`` holds across every replica (see the module)."""

    def __init__(
        self,
        limits: Limits,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        store: Store,
        live: SharedLiveState,
        registers: bool = True,
    ) -> None:
        super().__init__(limits, clock=clock, sleep=sleep)
        self._store = store
        self._live = live
        self._registers = registers  # (not on gpuaas: no idempotency keys; its ledger file)
        self.shares: dict[str, int] = {}
        """Places of the fleet's cap this replica holds in Redis, per target name."""
        self.wanted: set[str] = set()
        self.replicas = 1
        """Replicas alive at the last sync."""
        self.held: dict[str, int] = {}
        """Places of the cap held in the whole fleet at the last sync, per target name."""
        self.grace_until = 0.0
        """Until then, Redis being just back, lease only within the fallback share."""
        self._asking: dict[str, asyncio.Task[None]] = {}
        self._giving: set[asyncio.Task[None]] = set()
        self._lock = asyncio.Lock()  # this replica's changes to its shares, in order

    def _at_cap(self, name: str, count: _Count) -> bool:
        share = self.shares.get(name, 0)
        if count.live < share:
            return False
        if self._store.up is False or self._clock() < self.grace_until:
            # Redis is down (or just back, while the others write their shares again):
            # this replica's share, and its part of the room the fleet had left at the
            # last sync (so that the replicas together stay within the limit).
            room = max(0, (count.limit or 0) - self.held.get(name, 0))
            return count.live >= share + room // max(1, self.replicas)
        self.wanted.add(name)
        self.ask(name)
        return True

    def ask(self, name: str) -> None:
        """Ask Redis for one more place of ``name`` (once at a time); wake the scopes when
        it is granted, or when Redis turned out down (the fallback share then applies)."""
        if name in self._asking or self._store.up is False:
            return
        task = asyncio.get_running_loop().create_task(self._acquire(name))
        self._asking[name] = task

    async def _acquire(self, name: str) -> None:
        granted: bool | None = None
        try:
            async with self._lock:
                granted = await self._store.acquire(name, self._count(name).limit or 0)
                if granted:
                    self.shares[name] = self.shares.get(name, 0) + 1
        except Down:
            pass
        finally:
            self._asking.pop(name, None)
        if granted:
            self.wanted.discard(name)
        if granted is not False:
            self._wake(name)

    def creating(self, name: str, lease: AsyncLease) -> Awaitable[None] | None:
        """Register the lease's idempotency key and create body before the create is sent,
        so that should this replica die meanwhile the others replay the key, find what it
        made and release it. Bounded by the store's timeout; Redis down: not waited for
        (the key is written at the reconciliation, and the server's TTL is the backstop)."""
        if not self._registers:
            return None
        body = json.dumps(
            {
                "model": lease.model,
                "gpus": lease.gpus,
                "gpu_type": lease.gpu_type,
                "pool_id": lease.pool_id,
                "ttl": lease.ttl_seconds,
            }
        )
        field, value = f"key:{lease.idempotency_key}", f"{name}\tcreating\t{body}"
        self._live.mine[field] = (name, value.partition("\t")[2], self._clock())
        self._live.mine_dirty = True
        if self._store.up is False:
            return None
        return self._register(field, value)

    async def _register(self, field: str, value: str) -> None:
        try:
            async with self._store.writing:
                await self._store.register(field, value)
        except Down:
            pass

    def created(self, name: str, lease: AsyncLease) -> None:
        if self._live.mine.pop(f"key:{lease.idempotency_key}", None) is not None:
            self._live.mine_dirty = True
            self._live.poke()

    def started(self, name: str) -> None:
        super().started(name)
        count = self._count(name)
        if count.limit is not None and count.live > self.shares.get(name, 0):
            self.shares[name] = count.live  # leased on the fallback share: owned now

    def failed(self, name: str, error: BaseException | None) -> None:
        super().failed(name, error)
        self.give_back(name)

    def released(self, name: str) -> None:
        super().released(name)  # the scopes waiting take the room first
        self.give_back(name)

    def give_back(self, name: str) -> None:
        """Return the places of ``name`` this replica holds beyond what it uses."""
        count = self._count(name)
        spare = self.shares.get(name, 0) - count.live
        if count.limit is None or spare <= 0 or name in self._asking:
            return
        self.shares[name] -= spare
        if self._store.up is False:
            return  # the reconciliation sets the share when Redis is back
        task = asyncio.get_running_loop().create_task(self._give_back(name, spare))
        self._giving.add(task)
        task.add_done_callback(self._giving.discard)

    async def _give_back(self, name: str, spare: int) -> None:
        try:
            async with self._lock:
                await self._store.give_back(name, spare)
        except Down:
            pass  # reconciled when Redis is back

    def tick(self) -> None:
        """At each sync: ask again for the places still wanted, give back the spare."""
        if self.grace_until and self._clock() >= self.grace_until:
            self.grace_until = 0.0
            self.wake_all()
        for name in list(self.wanted):
            if self._count(name).live < self.shares.get(name, 0):
                self.wanted.discard(name)
            else:
                self.ask(name)
        for name in list(self.shares):
            if name not in self.wanted:
                self.give_back(name)

    async def reconcile(self, *, back: bool) -> None:
        """Write this replica's true shares (Redis was down, or forgot this replica); when
        ``back`` from an outage, wait two syncs for the others to do so before asking for
        more."""
        async with self._lock:
            if back:
                state = self._store.state
                self.grace_until = self._clock() + 2 * state.sync_interval + state.timeout
            for name, count in self._counts.items():
                if count.limit is not None:
                    share = max(self.shares.get(name, 0), count.live)
                    await self._store.set_share(name, share)
                    self.shares[name] = share

    def wake_all(self) -> None:
        for name in list(self._counts):
            self._wake(name)

    def stop(self) -> None:
        super().stop()
        for task in (*self._asking.values(), *self._giving):
            task.cancel()


class SharedLiveState(LocalLiveState):
    """A ``LocalLiveState`` that also holds what the other replicas reported at the last
    sync (their statistics and the fleet's breaker cool-downs), and the allocations this
    replica holds, for the fleet's registry."""

    def __init__(self, targets: Sequence[Target], *, store: Store, **options: Any) -> None:
        super().__init__(targets, **options)
        self._store = store
        self._cool_until: dict[str, float] = {}
        # Per target: the other replicas' calls and errors in their windows, latencies
        # observed, and their latency figures weighted by those.
        self._remote: dict[str, tuple[int, int, int, float, float, float]] = {}
        self._was_open: dict[str, bool] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self.mine: dict[str, tuple[str, str, float]] = {}
        """This replica's allocations: id -> (target name, held or releasing, since); and
        its leases whose create may be under way: ``key:<idempotency key>`` -> (target
        name, ``creating<TAB><body>``, since)."""
        self.mine_dirty = True
        self.poke: Callable[[], None] = lambda: None

    # Calls

    def begin(self, name: str) -> bool:
        if self._cool_until:
            until = self._cool_until.get(name)
            if until is not None:
                left = until - self._clock()
                if left > 0:
                    raise CircuitOpenError(
                        f"the circuit breaker for {name} is open across the fleet (another "
                        f"replica saw it fail), so the call was not sent; it lets calls "
                        f"through in {left:.1f}s",
                        retry_after=left,
                    )
        return super().begin(name)

    def finished(
        self, name: str, ticket: bool, outcome: Outcome, seconds: float, usage: Usage | None
    ) -> None:
        super().finished(name, ticket, outcome, seconds, usage)
        if outcome != "failed" and not ticket:
            return
        live = self._targets[name]
        if ticket:  # a half-open probe: closed the breaker, or opened it again
            opened = outcome == "failed"
            if not opened and outcome == "ok":
                self._was_open[name] = False
        else:
            opened = live.breaker.state is _OPEN and not self._was_open.get(name, False)
        if opened:
            self._was_open[name] = True
            self._spawn(self._cool(name, live.breaker.config.open_duration))

    async def _cool(self, name: str, seconds: float) -> None:
        try:
            left = await self._store.cool(name, seconds)
        except Down:
            return
        self._set_cool(name, left)

    def _set_cool(self, name: str, left: float) -> None:
        until = self._clock() + left
        if until > self._cool_until.get(name, 0.0):
            self._cool_until[name] = until
            self._targets[name].stale = True

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # Allocations

    def held(self, name: str, key: str, holding: bool) -> None:
        super().held(name, key, holding)
        self.mine[key] = (name, "held" if holding else "releasing", self._clock())
        self.mine_dirty = True
        self.poke()

    def allocations(self) -> str:
        """This replica's allocations, one ``id<TAB>target<TAB>state`` line each."""
        now = self._clock()
        for key, (_, state, since) in list(self.mine.items()):
            if state == "releasing" and now - since > _RELEASING_KEPT:
                del self.mine[key]
        return "".join(f"{key}\t{n}\t{state}\n" for key, (n, state, _) in self.mine.items())

    # What the replicas exchange

    def stats(self) -> str:
        """This replica's recent figures per target, one ``target<TAB>values`` line each."""
        now = self._clock()
        lines = []
        for live in self._all:
            outcomes = live.outcomes
            if outcomes and outcomes[0][0] < now - self._window:
                self._expire(live, now)
            ewma, p50, p95 = live.published
            values = [len(outcomes), live.errors_in_window, len(live.latencies), ewma, p50, p95]
            text = " ".join("-" if v is None else f"{v:.6g}" for v in values)
            lines.append(f"{live.target.name}\t{text}\n")
        return "".join(lines)

    def apply(self, stats: Sequence[Any], cools: Sequence[Any]) -> None:
        """Take in the fleet's figures read at a sync (``stats``: field, value, ...; the
        cool-downs' remaining milliseconds, in the targets' order)."""
        me = self._store.replica
        remote: dict[str, list[float]] = {}
        for index in range(0, len(stats) - 1, 2):
            owner, _, name = _text(stats[index]).partition("\t")
            if owner == me or name not in self._targets:
                continue
            parts = _text(stats[index + 1]).split()
            if len(parts) != 6:
                continue
            count, errors, seen = (int(float(part)) for part in parts[:3])
            sums = remote.setdefault(name, [0, 0, 0, 0.0, 0.0, 0.0])
            sums[0] += count
            sums[1] += errors
            if seen and "-" not in parts[3:]:
                sums[2] += seen
                for slot, part in zip((3, 4, 5), parts[3:], strict=True):
                    sums[slot] += float(part) * seen
        merged = {
            name: (int(s[0]), int(s[1]), int(s[2]), s[3], s[4], s[5]) for name, s in remote.items()
        }
        if merged != self._remote:
            self._remote = merged
            for live in self._all:
                live.stale = True
        for live, left in zip(self._all, cools, strict=False):
            ms = int(left)
            if ms > 0:
                self._set_cool(live.target.name, ms / 1000.0)

    def forget_remote(self) -> None:
        """Redis is down: route on this replica's own figures."""
        if self._remote:
            self._remote = {}
            for live in self._all:
                live.stale = True

    def _state(self, live: _Target, circuit: CircuitState) -> TargetState:
        state = super()._state(live, circuit)
        name = live.target.name
        until = self._cool_until.get(name)
        changes: dict[str, Any] = {}
        if until is not None:
            if self._clock() < until:
                if circuit is not _OPEN:
                    changes["circuit"] = _OPEN
            else:
                del self._cool_until[name]
        remote = self._remote.get(name)
        if remote is not None:
            count, errors, seen, ewma, p50, p95 = remote
            total = len(live.outcomes) + count
            if total:
                changes["error_rate"] = min(1.0, (live.errors_in_window + errors) / total)
            if seen:
                mine = len(live.latencies)
                for field, value, theirs in (
                    ("latency_ewma", state.latency_ewma, ewma),
                    ("latency_p50", state.latency_p50, p50),
                    ("latency_p95", state.latency_p95, p95),
                ):
                    weight = mine if value is not None else 0
                    changes[field] = ((value or 0.0) * weight + theirs) / (weight + seen)
        return attrs.evolve(state, **changes) if changes else state

    def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
