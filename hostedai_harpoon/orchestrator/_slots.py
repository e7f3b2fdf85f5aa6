"""Allocation slots: the leases one scope holds per target, shared by concurrent calls.

A ``Slot`` is one ``AsyncLease`` serving up to its target's ``max_concurrency`` calls at
once. ``Slots`` hands them out: a free place on a held allocation first, else a place in
the target's FIFO queue. Leasing is single flight: a new allocation is leased only while
the callers waiting outnumber the places on the allocations being made, within the
scope's cap, the orchestrator's cap and back-off (``Fleet``) and the session's budget.
A lease runs as a task of its own and serves whoever is first in the queue when it is
ready; a queue with nothing held or coming for it (a refused lease, a budget reached) is
refused at once, so that its callers fail over. Everything here runs on the event loop
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
    AsyncLease,
    BudgetExceededError,
    HostedAIError,
    LeaseState,
    OrchestratorClosedError,
)
from .. import _telemetry as telemetry
from ..routing import Target
from ._failover import fails_over
from ._fleet import Fleet
from ._group import Group, Limits, Slot
from ._inflight import settle
from ._live import LiveState
from ._spending import Spending

__all__ = ["Slots"]

log = logging.getLogger("hostedai_harpoon")


class Slots(Spending):
    """The allocations of one scope (a session, or the orchestrator's warm pool)."""

    def __init__(
        self,
        client: AsyncHostedAI | None,
        live: LiveState,
        fleet: Fleet,
        *,
        limits: Limits,
        queue_timeout: float,
        clock: Callable[[], float],
        lease_options: Mapping[str, Any],
        budget: float | None = None,
    ) -> None:
        self._client = client
        self._live = live
        self._fleet = fleet
        self._limits = limits
        self._queue_timeout = queue_timeout
        self._clock = clock
        self._lease_options = lease_options
        self._budget = budget
        self._groups: dict[str, Group] = {}
        self._held: set[Slot] = set()  # every allocation leased and not yet released
        self._making: dict[asyncio.Task[Slot | None], tuple[float, Target]] = {}
        self._closing: set[asyncio.Task[None]] = set()
        self._watch: asyncio.TimerHandle | None = None
        self._spent = 0.0  # allocations released, and leases that made none
        self._idle = 0.0  # of that, the time no call ran
        self.closed = False

    def _group(self, target: Target) -> Group:
        group = self._groups.get(target.name)
        if group is None:
            if not self._groups and not self.closed:
                self._fleet.join(self)  # (only once used: a scope never used costs nothing)
            limits = self._limits
            limit = limits.get(target.name) if isinstance(limits, Mapping) else limits
            group = self._groups[target.name] = Group(target, limit)
            shared = self._fleet.endpoints.get(target.name)
            if shared is not None:  # an endpoint target: its one shared slot, never leased
                group.slots.append(shared)
        return group

    def count(self, target: Target) -> int:
        """How many allocations of ``target`` are held or being made."""
        group = self._group(target)
        return len(group.slots) - group.borrowed + group.leasing

    def held(self) -> list[Slot]:
        """The allocations this scope leased and holds in service."""
        return [slot for slot in self._held if not slot.dead]

    def adopt(self, slot: Slot) -> None:
        """Serve this scope's callers on ``slot`` too: another replica's allocation."""
        group = self._group(slot.target)
        group.slots.append(slot)
        group.borrowed += 1
        self._pump(group)

    def disown(self, slot: Slot) -> None:
        """Stop handing out ``slot`` (adopted); the calls on it finish."""
        slot.dead = True
        group = self._groups.get(slot.target.name)
        if group is not None and slot in group.slots:
            group.slots.remove(slot)
            group.borrowed -= 1

    # Taking and giving back

    def take(self, target: Target) -> Slot | None:
        """A place on a held allocation of ``target`` when one is free now and nobody waits
        (give it back with ``release``, with the slot's ``share`` read right after); else
        None: ``acquire`` it instead."""
        group = self._groups.get(target.name)
        if group is None or group.waiting or self.closed:
            return None
        slot = group.free_slot()
        if slot is None:
            return None
        slot.join(self._clock())
        return slot

    async def acquire(self, target: Target) -> tuple[Slot, float]:
        """A place on an allocation of ``target``, waiting in line up to ``queue_timeout``
        seconds, and the slot's ``share`` when it was granted; give it back with
        ``release``."""
        if self.closed:
            raise OrchestratorClosedError("the allocations of this scope were released")
        group = self._group(target)
        if not group.waiting:
            slot = group.free_slot()
            if slot is not None:
                slot.join(self._clock())
                return slot, slot.share
        waiter: asyncio.Future[Slot] = asyncio.get_running_loop().create_future()
        group.waiters.append(waiter)
        group.waiting += 1
        self._pump(group)
        try:
            async with asyncio.timeout(self._queue_timeout):
                slot = await waiter
        except BaseException as exc:
            if not waiter.done() or waiter.cancelled():  # gave up (cancelling our wait)
                waiter.cancel()
                group.waiting -= 1
                if not group.waiting and group.for_queue:
                    # Nobody left to serve: stop the leases made for them, and see them
                    # released before giving up (as if this call had leased them itself).
                    stopping = list(group.for_queue)
                    for task in stopping:
                        task.cancel()
                    await settle(stopping)
            elif not waiter.cancelled() and waiter.exception() is None:
                granted = waiter.result()  # granted just as we gave up: give it back
                self.release(granted, granted.share)
            if isinstance(exc, TimeoutError):
                raise AllocationError(
                    f"no room on an allocation of {group.target.name} within "
                    f"{self._queue_timeout}s (queue_timeout): {len(group.slots)} held and "
                    f"{group.leasing} being leased (max_allocations: {group.limit}, "
                    f"{self._fleet.live(group.target.name)} counted in the orchestrator), "
                    f"{group.waiting} callers waiting"
                ) from None
            raise
        return slot, slot.share

    async def open(self, target: Target) -> Slot | None:
        """Lease one more allocation of ``target`` to keep warm (None: at a cap)."""
        group = self._group(target)
        why = self._why_not(group)
        if why == "cap":
            return None
        if why is not None:
            raise self._refusal(group, why)
        slot = await asyncio.shield(self._start_lease(group))
        if slot is None:
            raise self._refusal(group, "failed")
        return slot

    def release(
        self, slot: Slot, start: float, *, broken: bool = False, seconds: float | None = None
    ) -> float:
        """Give back one place on ``slot`` (``start``: its ``share`` when taken); ``broken``
        lets the allocation go. Returns the call's share of the allocation's cost."""
        now = self._clock()
        slot.account(now)
        slot.in_use -= 1
        slot.last_used = now
        group = self._groups[slot.target.name]
        if seconds is not None:
            group.call_seconds.add(seconds)
        # With a budget spent out, the callers still waiting are refused instead.
        serve = group.waiting and (self._budget is None or not self._spent_out())
        if slot.endpoint:  # a server that stays: the call paid its share, others may go on
            cost = slot.share - start
            self._spent += cost
            if serve:
                self._hand_out(group, slot)
            self._fleet.wake(slot.target.name)
            if self._budget is not None:
                self.mind_budget()
            return cost
        if broken or slot.lease.state is not LeaseState.ACTIVE:
            self._drop(group, slot)
        elif serve and not slot.dead:
            self._hand_out(group, slot)
        if slot.dead and slot.in_use == 0:
            self._close_later(slot)
        if self._budget is not None:
            self.mind_budget()
        return slot.share - start

    def release_idle(self, idle_for: float, keep: Mapping[str, int]) -> None:
        """Let go of allocations lost meanwhile, and of those unused for ``idle_for``
        seconds beyond ``keep`` per target."""
        now = self._clock()
        for name, group in self._groups.items():
            if group.target.endpoint is not None:
                continue  # a server that stays
            for slot in [s for s in group.slots if s.lease.state is not LeaseState.ACTIVE]:
                if slot.in_use == 0 and not slot.endpoint:
                    self._drop(group, slot)
                    self._close_later(slot)
            spare = len(group.slots) - group.borrowed - keep.get(name, 0)
            for slot in list(group.slots):
                if spare <= 0:
                    break
                if slot.endpoint or slot.in_use or slot.borrowed:
                    continue  # another replica's, or busy here or on another replica
                if now - slot.last_used >= idle_for:
                    self._drop(group, slot)
                    self._close_later(slot)
                    spare -= 1

    # The queue

    def pump(self, name: str) -> None:
        """Serve the callers waiting for ``name`` as far as can be now (the fleet calls
        this when a cap or a back-off of ``name`` lets up)."""
        group = self._groups.get(name)
        if group is not None and group.waiting:
            self._pump(group)

    def _pump(self, group: Group) -> None:
        if self.closed:
            return
        if group.waiting and self._budget is not None and self._spent_out():
            return
        if group.waiting:
            for slot in group.slots:
                self._hand_out(group, slot)
                if not group.waiting:
                    return
        room = group.target.max_concurrency
        why = None
        while group.waiting > group.leasing * room:
            why = self._why_not(group)
            if why is not None:
                break
            group.for_queue.add(self._start_lease(group))
        if why is None or why == "cap" or group.slots or group.leasing or group.releasing:
            return  # served, or what is held, coming or being let go will serve them
        group.refuse_waiters(lambda: self._refusal(group, why))

    def _why_not(self, group: Group) -> str | None:
        """Why no lease of ``group`` may start now (None: it may)."""
        if self.closed:
            return "closed"
        if group.target.endpoint is not None:
            return "cap"  # nothing to lease: wait for a place on the server
        if not group.may_lease():
            return "cap"
        target = group.target
        fleet = self._fleet
        why = fleet.blocked(target.name)
        if why is not None:
            return why
        free = self._live.pool_free(target)  # no more leases at once than the pool has room
        if free is not None and fleet.leasing(target.name) >= max(1, free // target.gpus):
            return "cap"
        budget = self._budget
        if budget is not None and self.committed() >= budget:
            return "budget"  # (a lease started below it overshoots by one allocation's unit)
        return None

    def _refusal(self, group: Group, why: str) -> HostedAIError:
        """The error for callers no allocation of ``group`` can serve now."""
        name = group.target.name
        if why == "closed":
            return OrchestratorClosedError("the allocations of this scope were released")
        if why == "budget":
            budget = self._budget or 0.0
            spent = self.spent()
            return BudgetExceededError(
                f"the session's budget of ${budget:.7g} is spent or committed "
                f"(${self.committed():.7g}): no allocation of {name} is leased for it, "
                f"which would cost at least ${self._new_allocation_cost(group):.7g}; "
                "the call was not sent",
                budget=budget,
                spent=spent,
            )
        last = group.last_error
        if isinstance(last, HostedAIError) and (why == "failed" or not fails_over(last)):
            return last  # the request's own error (a wrong key, say): no use going elsewhere
        error = AllocationError(
            f"could not lease {name}: {last or 'a lease was refused'}; trying again in "
            f"{self._fleet.retry_in(name):.2f}s, at most one lease at a time meanwhile"
        )
        error.__cause__ = _root(last)
        return error

    def _hand_out(self, group: Group, slot: Slot) -> None:
        """Give the room on ``slot`` to the callers waiting, first come first served."""
        while group.waiting and slot.usable():
            waiter = group.next_waiter()
            if waiter is None:
                return
            slot.join(self._clock())
            waiter.set_result(slot)

    # Allocations

    def _start_lease(self, group: Group) -> asyncio.Task[Slot | None]:
        group.leasing += 1
        self._fleet.started(group.target.name)
        task = asyncio.get_running_loop().create_task(self._lease(group))
        self._making[task] = (self._clock(), group.target)
        task.add_done_callback(self._made)
        return task

    def _made(self, task: asyncio.Task[Slot | None]) -> None:
        for group in self._groups.values():
            group.for_queue.discard(task)
        entry = self._making.pop(task, None)
        if entry is not None:  # a lease that made nothing (a slot's cost is its own)
            since, target = entry
            cost = (self._clock() - since) * target.cost_per_hour / 3600.0
            self._spent += cost
            self._idle += cost
            self._live.idled(target.name, cost)

    async def _lease(self, group: Group) -> Slot | None:
        """Lease an allocation for ``group`` (its ``leasing`` already counts this one) and
        hand it to the callers waiting; None when it failed (``group.last_error`` says why)."""
        target = group.target
        started = self._clock()
        stack = AsyncExitStack()
        client = self._client
        early: list[Exception] = []

        def failed_now(exc: BaseException) -> None:
            """Entering failed: the callers waiting fail over now, while the lease's
            clean-up releases what it made (which counts against the caps until then)."""
            if isinstance(exc, Exception):
                early.append(exc)
                group.leasing -= 1
                group.cleaning += 1
                group.last_error = exc
                self._fleet.refused(target.name, exc)
                self._pump(group)

        making: AsyncLease | None = None
        try:
            if client is None:  # pragma: no cover - only endpoint targets lack a client
                raise AllocationError(f"{target.name} has no client to lease it with")
            making = client.allocate(
                target.model,
                target.gpus,
                target.gpu_type,
                target.pool,
                inference=target.inference,  # type: ignore[arg-type]
                **self._lease_options,
            )
            making.on_enter_failed = failed_now
            registering = self._fleet.creating(target.name, making)
            if registering is not None:  # a fleet: its key is in the registry first
                await registering
            with telemetry.priced(target.cost_per_gpu_hour):
                lease = await stack.enter_async_context(making)
        except BaseException as exc:
            if early:  # told already; its clean-up is over now
                group.cleaning -= 1
                self._fleet.cleaned(target.name)
            else:
                group.leasing -= 1
                error = exc if isinstance(exc, Exception) else None
                group.last_error = error or group.last_error
                self._fleet.failed(target.name, error)
                self._pump(group)
            if isinstance(exc, Exception):
                return None
            raise
        finally:
            if making is not None:
                self._fleet.created(target.name, making)
        group.leasing -= 1
        self._fleet.succeeded(target.name)
        now = self._clock()
        group.lease_seconds.add(now - started)
        slot = Slot(target, lease, stack, now, leased_at=started)
        self._making.pop(asyncio.current_task(), None)  # type: ignore[arg-type]
        group.slots.append(slot)
        self._held.add(slot)
        self._live.held(target.name, slot.allocation_id, True)
        if self.closed:
            self._drop(group, slot)
            self._close_later(slot)
            return None
        self._pump(group)
        if self._budget is not None:
            self.mind_budget()
        return slot

    def _drop(self, group: Group, slot: Slot) -> None:
        """Take ``slot`` out of service; it is closed once its last call gives it back.
        It counts against the caps until its release has ended."""
        if slot.dead:
            return
        slot.dead = True
        group.slots.remove(slot)
        group.releasing += 1
        self._live.held(slot.target.name, slot.allocation_id, False)

    def _close_later(self, slot: Slot) -> None:
        stack, slot.stack = slot.stack, None
        if stack is None:
            return  # already being closed
        task = asyncio.get_running_loop().create_task(self._close(slot, stack))
        self._closing.add(task)
        task.add_done_callback(self._closing.discard)

    async def _close(self, slot: Slot, stack: AsyncExitStack) -> None:
        started = self._clock()
        try:
            await stack.aclose()
        except AllocationError as exc:  # already logged, and kept in client.orphans()
            log.debug("allocation %s was not released: %s", slot.allocation_id, exc)
        finally:
            now = self._clock()
            slot.account(now)
            slot.closed_at = now
            self._held.discard(slot)
            self._spent += slot.cost(now)
            self._idle += slot.idle_cost
            self._live.idled(slot.target.name, slot.idle_cost)
            group = self._groups[slot.target.name]
            group.releasing -= 1
            group.release_seconds.add(now - started)
            self._fleet.released(slot.target.name)

    async def aclose(self) -> None:
        """Release every allocation and refuse the callers still waiting. Calls in flight
        should be cancelled first: their allocations are released under them."""
        self.closed = True
        self._fleet.leave(self)
        if self._watch is not None:
            self._watch.cancel()
        for task in self._making:
            task.cancel()
        for group in self._groups.values():
            group.refuse_waiters(lambda: OrchestratorClosedError("the allocations were released"))
            for slot in list(group.slots):
                if slot.endpoint:
                    group.slots.remove(slot)  # shared with other scopes; stays open
                else:
                    self._drop(group, slot)
        await settle(list(self._making))
        for slot in list(self._held):  # those dropped with calls still on them too
            if slot.dead:
                self._close_later(slot)
        await settle(self._closing)


def _root(error: BaseException | None) -> BaseException | None:
    """The deepest cause of ``error`` (a full pool's ``CapacityError``, for instance)."""
    while error is not None and error.__cause__ is not None:
        error = error.__cause__
    return error
