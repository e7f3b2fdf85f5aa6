"""One replica of a fleet: its heartbeat and sync with Redis, the fleet's orphans, and what
it does when Redis goes away and comes back.

Every ``sync_interval`` (sooner when this replica's allocations changed) one script
writes the heartbeat, this replica's allocations, figures and warm pool, reaps the
replicas whose heartbeat lapsed (their allocations become the fleet's orphans) and reads
back the others' figures and warm pools (``_warm.py``), the cool-downs and the orphans.
Each orphan is then released by one replica at a time (a short claim), and every replica
keeps trying until one succeeds.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from .. import AsyncHostedAI, CircuitBreakerConfig, HostedAIError
from .._leases._release import nothing_was_made
from ..routing import Target
from ._group import Limits
from ._redis import Down, RedisState, Store, _text
from ._shared import SharedFleet, SharedLiveState
from ._warm import SharedWarmPool

__all__ = ["Replica"]

log = logging.getLogger("hostedai_harpoon")

_BY_KEY = "key:"  # a registry entry of a lease whose create may be under way


class Replica:
    """This process's membership of a fleet (see the module)."""

    def __init__(
        self,
        state: RedisState,
        client: AsyncHostedAI,
        targets: Sequence[Target],
        limits: Limits,
        *,
        breaker: CircuitBreakerConfig,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        window: float,
        refresh: float,
    ) -> None:
        self.store = Store(state)
        self._state = state
        self._client = client
        self._names = [target.name for target in targets]
        self._models = {target.model: target.name for target in targets}
        self.live = SharedLiveState(
            targets,
            store=self.store,
            breaker=breaker,
            clock=clock,
            window=window,
            refresh=refresh,
            pool_id=client.pool_id,
        )
        self.fleet = SharedFleet(
            limits,
            clock=clock,
            sleep=sleep,
            store=self.store,
            live=self.live,
            registers=client.dialect != "gpuaas",
        )
        self.warm = SharedWarmPool(client, targets, clock=clock, shares=client.dialect != "gpuaas")
        self.live.poke = self._poke
        self._woken = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._leaving = False
        self._releasing: dict[str, asyncio.Task[None]] = {}
        self._published: set[str] = set()
        self._cleaning: asyncio.Task[Any] | None = None
        self.syncs = 0

    def status(self) -> str:
        """Where this replica's state lives now, for ``snapshot()`` and ``health()``."""
        fleet = self._state.fleet
        if self.store.up is False:
            return f"local (Redis down: {self.store.trouble}; fleet {fleet!r})"
        return f"redis (fleet {fleet!r}, {self.fleet.replicas} replicas)"

    def min_warm(self, wanted: Mapping[str, int]) -> Mapping[str, int]:
        """The warm allocations this replica keeps per target: the fleet's ``min_warm`` if
        it is the fleet's warmer, none otherwise (each its own while Redis is down)."""
        return self.warm.min_warm(wanted, self.store.up is False)

    def _poke(self) -> None:
        self._woken.set()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        every = self._state.sync_interval
        # Stopped by ``leaving`` as well as by cancelling: a cancellation that lands while a
        # bounded Redis call times out can be taken for the timeout (and swallowed).
        while not self._leaving:
            try:
                await self.sync()
            except Exception as exc:  # never let the membership die of a surprise
                log.error("shared state: a sync failed: %s", exc, exc_info=exc)
            try:
                async with asyncio.timeout(every):
                    await self._woken.wait()
            except TimeoutError:
                pass
            self._woken.clear()

    async def sync(self) -> None:
        """One round with Redis (see the module)."""
        store, live, fleet = self.store, self.live, self.fleet
        was = store.up
        try:
            async with store.writing:
                dirty = live.mine_dirty or was is not True
                allocations = live.allocations() if dirty else None
                live.mine_dirty = False
                use = self.warm.usage()
                answer = await store.sync(allocations, live.stats(), self._names, use)
            lapsed = int(answer[0])
            if was is not True or lapsed:
                await fleet.reconcile(back=was is False)
                self._published.clear()
        except Down:
            live.mine_dirty = True
            live.forget_remote()
            self.warm.forget()
            if was is not False:
                fleet.wake_all()  # the waiting scopes may lease on the fallback share
            return
        if was is False:
            log.warning("shared state: Redis is back; this replica's state is reconciled")
        store.up = True
        store.trouble = None
        self.syncs += 1
        fleet.replicas = max(1, int(answer[1]))
        if not fleet.grace_until:  # (just back: the shares read are not all written yet)
            fleet.held = dict(zip(self._names, (int(n) for n in answer[5]), strict=False))
        live.apply(answer[2], answer[4])
        self.warm.warmer = bool(int(answer[6]))
        self.warm.apply(answer[7])
        fleet.tick()
        await self._orphans(answer[3])

    async def _publish(self) -> set[str]:
        """Put this replica's orphans (those with an id) in the fleet's ledger."""
        added = set()
        for orphan in self._client.orphans():
            key = orphan.allocation_id
            if key is None or key in self._published:
                continue
            await self.store.orphan(key, self._models.get(orphan.model, orphan.model))
            self._published.add(key)
            added.add(key)
        return added

    async def _orphans(self, listed: Sequence[Any]) -> None:
        orphans = {
            _text(listed[index]): _text(listed[index + 1]) for index in range(0, len(listed) - 1, 2)
        }
        ids = set(orphans) | await self._publish()
        if self._published - ids and self._cleaning is None:
            # Another replica released one of ours: let the local ledger see it.
            self._published &= ids
            self._cleaning = asyncio.get_running_loop().create_task(self._clean())
        loop = asyncio.get_running_loop()
        for key in ids:
            if key not in self._releasing:
                self._releasing[key] = loop.create_task(self._release(key, orphans.get(key)))

    async def _clean(self) -> None:
        try:
            await self._client.release_orphans()
        except HostedAIError as exc:
            log.debug("shared state: the local orphans are still held: %s", exc)
        finally:
            self._cleaning = None

    async def _release(self, key: str, value: str | None) -> None:
        try:
            if not await self.store.claim(key, max(5.0, 4 * self._state.sync_interval)):
                return
            if key.startswith(_BY_KEY):
                await self._replay(key.removeprefix(_BY_KEY), value or "")
            else:
                await self._client.release_allocation(key)
                log.info("shared state: released orphaned allocation %s", key)
            await self.store.orphan_done(key)
        except Down:
            pass
        except HostedAIError as exc:
            log.warning("shared state: could not release orphan %s yet: %s", key, exc)
        finally:
            self._releasing.pop(key, None)

    async def _replay(self, idempotency_key: str, value: str) -> None:
        """A dead replica's lease was creating an allocation under ``idempotency_key``:
        replay its create (the API answers with what the key made, or makes it now) and
        release that; a replay refused for certain (a full pool, say) proves nothing was
        made."""
        try:
            body = json.loads(value.split("\t", 3)[3])
            model, gpus, gpu_type = body["model"], body["gpus"], body["gpu_type"]
            pool_id, ttl = body["pool_id"], body["ttl"]
        except (ValueError, IndexError, KeyError, TypeError):
            log.warning(
                "shared state: the fleet's registry holds a malformed entry for idempotency "
                "key %s; it is dropped (the server's TTL releases what it made)",
                idempotency_key,
            )
            return
        try:
            found = await self._client.create_allocation(
                model, gpus, gpu_type, pool_id, ttl, idempotency_key
            )
        except HostedAIError as exc:
            if not nothing_was_made(exc):
                raise
            log.info(
                "shared state: a dead replica's create (idempotency key %s) made nothing",
                idempotency_key,
            )
            return
        await self._client.release_allocation(found.id)
        log.info(
            "shared state: released allocation %s, whose create (idempotency key %s) was "
            "under way when its replica died",
            found.id,
            idempotency_key,
        )

    async def aclose(self) -> None:
        """Leave the fleet: publish what could not be released, then drop this replica's
        heartbeat, shares and figures."""
        self.live.stop()
        self._leaving = True
        self._woken.set()
        tasks = [task for task in (self._task, self._cleaning) if task is not None]
        tasks += self._releasing.values()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            if self.store.up is not False:
                await self._publish()
                await self.store.leave(self._names)
        except Down:
            log.warning("shared state: left the fleet without telling Redis (it is down)")
        finally:
            await self.store.aclose()
