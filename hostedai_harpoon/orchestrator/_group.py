"""One target's allocations within a scope: its slots, and the callers waiting for one."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable, Mapping
from contextlib import AsyncExitStack

from .. import AsyncLease, LeaseState
from ..routing import Target
from ._endpoints import EndpointLease, RemoteLease

__all__ = ["Group", "Limits", "Slot"]

Limits = int | Mapping[str, int] | None
"""Allocations per target: one cap for all, a cap per target name, or ``None``: no cap."""

# Until a scope has timed them, the seconds a call, a lease and a release are taken to last
# (budgets reserve money by these).
_FIRST_CALL_SECONDS = 1.0
_FIRST_LEASE_SECONDS = 1.0
_FIRST_RELEASE_SECONDS = 0.1
_EWMA_WEIGHT = 0.2


class Slot:
    """One allocation of a target, how many calls it serves now, and what it has cost.

    Cost is shared out as it accrues: each stretch of time between two changes of
    ``in_use`` costs the allocation's price for that stretch, split evenly among the calls
    in flight on it then (``share`` is the running sum of one call's part); a stretch with
    no call is idle cost. A call's cost is ``share`` when it ends minus ``share`` when it
    began, so the calls' costs and the idle cost add up to what the allocation cost.
    """

    __slots__ = (
        "allocation_id",
        "borrowed",
        "busy_cost",
        "closed_at",
        "dead",
        "endpoint",
        "idle_cost",
        "in_use",
        "last_used",
        "lease",
        "marked",
        "opened_at",
        "price",
        "share",
        "stack",
        "target",
    )

    def __init__(
        self,
        target: Target,
        lease: AsyncLease | EndpointLease | RemoteLease,
        stack: AsyncExitStack | None,
        now: float,
        *,
        leased_at: float | None = None,
    ):
        self.target = target
        self.lease = lease
        self.allocation_id = lease.id
        """The allocation's id."""
        self.stack = stack
        """The lease's exit; ``None`` once its release began."""
        self.in_use = 0
        self.borrowed = 0
        """Calls other replicas of a fleet run on it, as last synced (the fleet's warm pool)."""
        self.opened_at = now if leased_at is None else leased_at
        """When leasing it began: it costs from then on."""
        self.closed_at: float | None = None
        """When its release ended (confirmed, or handed to the orphan ledger)."""
        self.last_used = now
        self.dead = False
        self.price = target.cost_per_hour / 3600.0
        self.share = 0.0
        # The time spent making it is idle cost: no call ran on it yet.
        self.idle_cost = (now - self.opened_at) * self.price
        self.marked = now
        # An endpoint target's server, or another replica's allocation: never released
        # here, and paid only for the time calls run on it (no idle cost).
        self.endpoint = isinstance(lease, EndpointLease | RemoteLease)
        self.busy_cost = 0.0

    def usable(self) -> bool:
        """Whether another call may run on it now."""
        return (
            not self.dead
            and self.in_use + self.borrowed < self.target.max_concurrency
            and self.lease.state is LeaseState.ACTIVE
        )

    def join(self, now: float) -> None:
        """One more call on it, from ``now``."""
        self.account(now)
        self.in_use += 1

    def account(self, now: float) -> None:
        """Share out the cost of the stretch since the last change among its calls."""
        seconds = now - self.marked
        if seconds > 0.0:
            if self.in_use:
                self.share += seconds * self.price / self.in_use
                self.busy_cost += seconds * self.price
            elif not self.endpoint:
                self.idle_cost += seconds * self.price
        self.marked = now

    def cost(self, now: float) -> float:
        """What the allocation has cost so far, in dollars."""
        if self.endpoint:
            return self.busy_cost + (now - self.marked) * self.price * (self.in_use > 0)
        end = now if self.closed_at is None else self.closed_at
        return (end - self.opened_at) * self.price


class Group:
    """One target's slots, the leases being made for it, and the callers waiting."""

    __slots__ = (
        "borrowed",
        "call_seconds",
        "cleaning",
        "for_queue",
        "last_error",
        "lease_seconds",
        "leasing",
        "limit",
        "release_seconds",
        "releasing",
        "slots",
        "target",
        "waiters",
        "waiting",
    )

    def __init__(self, target: Target, limit: int | None) -> None:
        self.target = target
        self.limit = limit
        self.slots: list[Slot] = []
        self.borrowed = 0  # of those, other replicas' allocations (the fleet's warm pool)
        self.leasing = 0
        self.for_queue: set[asyncio.Task[Slot | None]] = set()  # leases the queue asked for
        self.releasing = 0
        self.cleaning = 0  # failed leases whose clean-up is releasing what they made
        # A waiter's future gets a slot with one use already counted for it.
        self.waiters: deque[asyncio.Future[Slot]] = deque()
        self.waiting = 0  # the waiters not yet granted, refused or gone
        self.last_error: BaseException | None = None
        self.call_seconds = Estimate(_FIRST_CALL_SECONDS)
        self.lease_seconds = Estimate(_FIRST_LEASE_SECONDS)
        self.release_seconds = Estimate(_FIRST_RELEASE_SECONDS)

    def free_slot(self) -> Slot | None:
        for slot in self.slots:
            if slot.usable():
                return slot
        return None

    def count(self) -> int:
        """Allocations held, being made or being released: all count against the cap."""
        return len(self.slots) - self.borrowed + self.leasing + self.releasing + self.cleaning

    def may_lease(self) -> bool:
        return self.limit is None or self.count() < self.limit

    def refuse_waiters(self, error: Callable[[], BaseException]) -> None:
        """Fail every caller still waiting with a fresh ``error()``."""
        while (waiter := self.next_waiter()) is not None:
            waiter.set_exception(error())

    def next_waiter(self) -> asyncio.Future[Slot] | None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                self.waiting -= 1
                return waiter
        return None


class Estimate:
    """How long something takes: a guess until first seen, then a moving average."""

    __slots__ = ("seen", "value")

    def __init__(self, guess: float) -> None:
        self.value = guess
        self.seen = False

    def add(self, seconds: float) -> None:
        """One more observation (the first replaces the guess)."""
        if self.seen:
            self.value += _EWMA_WEIGHT * (seconds - self.value)
        else:
            self.value, self.seen = seconds, True
