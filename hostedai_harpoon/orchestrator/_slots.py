"""Allocation slots: the leases one scope holds per target, shared by concurrent calls.

A ``Slot`` is one ``AsyncLease`` serving up to its target's ``max_concurrency`` calls at
once. ``Slots`` hands them out: a free place on a held allocation first, else a new lease
while the target is under its ``max_allocations``, else a place in a FIFO queue, granted
as soon as a call ends or an allocation is let go. Everything here runs on the event loop
without locks: the bookkeeping between two awaits is never interrupted, and no await
happens while a decision is half made.

Every allocation is entered through ``client.allocate(...)`` and let go by leaving the
lease, so the lease's guarantees hold: released on every way out, or recorded in
``client.orphans()``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack
from typing import Any

from .. import (
    AllocationError,
    AsyncHostedAI,
    CapacityError,
    LeaseState,
    OrchestratorClosedError,
)
from .. import _telemetry as telemetry
from ..routing import Target
from ._group import Group, Limits, Slot
from ._inflight import settle
from ._live import LiveState

__all__ = ["Slots"]

log = logging.getLogger("hostedai_harpoon")


class Slots:
    """The allocations of one scope (a session, or the orchestrator's warm pool)."""

    def __init__(
        self,
        client: AsyncHostedAI,
        live: LiveState,
        *,
        limits: Limits,
        queue_timeout: float,
        clock: Callable[[], float],
        lease_options: Mapping[str, Any],
    ) -> None:
        self._client = client
        self._live = live
        self._limits = limits
        self._queue_timeout = queue_timeout
        self._clock = clock
        self._lease_options = lease_options
        self._groups: dict[str, Group] = {}
        self._held: set[Slot] = set()  # every allocation not yet being released
        self._closing: set[asyncio.Task[None]] = set()
        self._spent = 0.0
        self.closed = False

    def _group(self, target: Target) -> Group:
        group = self._groups.get(target.name)
        if group is None:
            limits = self._limits
            limit = limits.get(target.name) if isinstance(limits, Mapping) else limits
            group = self._groups[target.name] = Group(target, limit)
        return group

    def count(self, target: Target) -> int:
        """How many allocations of ``target`` are held or being made."""
        group = self._group(target)
        return len(group.slots) + group.leasing

    def spent(self) -> float:
        """Dollars spent so far: every allocation's seconds held at its hourly price."""
        now = self._clock()
        held = sum(
            (now - slot.opened_at) * slot.target.cost_per_hour
            for group in self._groups.values()
            for slot in group.slots
        )
        return self._spent + held / 3600.0

    # Taking and giving back

    def take(self, target: Target) -> Slot | None:
        """A place on a held allocation of ``target`` when one is free now and nobody waits
        (give it back with ``release``); else None: ``acquire`` it instead."""
        group = self._groups.get(target.name)
        if group is None or group.waiters or self.closed:
            return None
        active, room = LeaseState.ACTIVE, target.max_concurrency
        for slot in group.slots:  # ``slot.usable()``, spelt out: this runs on every call
            if not slot.dead and slot.in_use < room and slot.lease.state is active:
                slot.in_use += 1
                return slot
        return None

    async def acquire(self, target: Target) -> Slot:
        """A place on an allocation of ``target``; give it back with ``release``."""
        if self.closed:
            raise OrchestratorClosedError("the allocations of this scope were released")
        group = self._group(target)
        if not group.waiters:
            slot = group.free_slot()
            if slot is not None:
                slot.in_use += 1
                return slot
            if group.may_lease():
                group.leasing += 1
                return await self._lease(group, uses=1)
        return await self._wait(group)

    async def open(self, target: Target) -> Slot | None:
        """Lease one more allocation of ``target`` to keep warm (None: at its limit)."""
        group = self._group(target)
        if not group.may_lease():
            return None
        group.leasing += 1
        return await self._lease(group, uses=0)

    def release(self, slot: Slot, *, broken: bool = False) -> None:
        """Give back one place on ``slot``; ``broken`` lets the allocation go."""
        slot.in_use -= 1
        slot.last_used = self._clock()
        group = self._groups[slot.target.name]
        if broken or slot.lease.state is not LeaseState.ACTIVE:
            self._drop(group, slot)
        elif group.waiters and not slot.dead:
            self._hand_out(group, slot)
        if slot.dead and slot.in_use == 0:
            self._close_later(slot)

    def release_idle(self, idle_for: float, keep: Mapping[str, int]) -> None:
        """Let go of allocations lost meanwhile, and of those unused for ``idle_for``
        seconds beyond ``keep`` per target."""
        now = self._clock()
        for name, group in self._groups.items():
            for slot in [s for s in group.slots if s.lease.state is not LeaseState.ACTIVE]:
                if slot.in_use == 0:
                    self._drop(group, slot)
                    self._close_later(slot)
            spare = len(group.slots) - keep.get(name, 0)
            for slot in list(group.slots):
                if spare <= 0:
                    break
                if slot.in_use == 0 and now - slot.last_used >= idle_for:
                    self._drop(group, slot)
                    self._close_later(slot)
                    spare -= 1

    async def _wait(self, group: Group) -> Slot:
        waiter: asyncio.Future[Slot | None] = asyncio.get_running_loop().create_future()
        group.waiters.append(waiter)
        try:
            async with asyncio.timeout(self._queue_timeout):
                granted = await waiter
        except BaseException as exc:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                granted = waiter.result()  # granted just as we gave up: give it back
                if granted is not None:
                    self.release(granted)
                else:
                    group.leasing -= 1
                    self._wake(group)
            waiter.cancel()
            if isinstance(exc, TimeoutError):
                raise AllocationError(
                    f"no room on an allocation of {group.target.name} within "
                    f"{self._queue_timeout}s: all {len(group.slots)} busy and "
                    f"max_allocations reached"
                ) from None
            raise
        if granted is None:
            return await self._lease(group, uses=1)
        return granted

    def _hand_out(self, group: Group, slot: Slot) -> None:
        """Give the room on ``slot`` to the callers waiting, first come first served."""
        while group.waiters and slot.usable():
            waiter = group.next_waiter()
            if waiter is None:
                return
            slot.in_use += 1
            waiter.set_result(slot)

    def _wake(self, group: Group) -> None:
        """Room for another allocation: the first caller waiting may lease it."""
        if group.may_lease():
            waiter = group.next_waiter()
            if waiter is not None:
                group.leasing += 1
                waiter.set_result(None)

    # Allocations

    async def _lease(self, group: Group, *, uses: int) -> Slot:
        """Lease an allocation for ``group`` (its ``leasing`` already counts this one)."""
        target = group.target
        stack = AsyncExitStack()
        try:
            with telemetry.priced(target.cost_per_gpu_hour):
                lease = await stack.enter_async_context(
                    self._client.allocate(
                        target.model,
                        target.gpus,
                        target.gpu_type,
                        target.pool,
                        **self._lease_options,
                    )
                )
        except BaseException as exc:
            group.leasing -= 1
            self._wake(group)
            if uses and group.slots and isinstance(exc.__cause__, CapacityError):
                return await self._wait(group)  # the pool is full: wait for what is held
            raise
        group.leasing -= 1
        slot = Slot(target, lease, stack, self._clock())
        slot.in_use = uses
        group.slots.append(slot)
        self._held.add(slot)
        self._live.held(target.name, slot.allocation_id, True)
        if self.closed:
            self._drop(group, slot)
            self._close_later(slot)
            raise OrchestratorClosedError("the allocations of this scope were released")
        self._hand_out(group, slot)
        return slot

    def _drop(self, group: Group, slot: Slot) -> None:
        """Take ``slot`` out of service; it is closed once its last call gives it back."""
        if slot.dead:
            return
        slot.dead = True
        group.slots.remove(slot)
        self._live.held(slot.target.name, slot.allocation_id, False)
        self._spent += (self._clock() - slot.opened_at) * slot.target.cost_per_hour / 3600.0
        self._wake(group)

    def _close_later(self, slot: Slot) -> None:
        if slot not in self._held:
            return  # already being closed
        self._held.discard(slot)
        task = asyncio.get_running_loop().create_task(_close(slot))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        """Release every allocation and refuse the callers still waiting. Calls in flight
        should be cancelled first: their allocations are released under them."""
        self.closed = True
        for group in self._groups.values():
            while (waiter := group.next_waiter()) is not None:
                waiter.set_exception(OrchestratorClosedError("the allocations were released"))
            for slot in list(group.slots):
                self._drop(group, slot)
        for slot in list(self._held):  # those dropped with calls still on them too
            self._close_later(slot)
        await settle(self._closing)


async def _close(slot: Slot) -> None:
    try:
        await slot.stack.aclose()
    except AllocationError as exc:  # already logged, and kept in client.orphans()
        log.debug("allocation %s was not released: %s", slot.allocation_id, exc)
