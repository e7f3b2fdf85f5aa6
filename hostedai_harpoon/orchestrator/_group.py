"""One target's allocations within a scope: its slots, and the callers waiting for one."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Mapping
from contextlib import AsyncExitStack

from .. import AsyncLease, LeaseState
from ..routing import Target

__all__ = ["Group", "Limits", "Slot"]

Limits = int | Mapping[str, int] | None
"""Allocations per target: one cap for all, a cap per target name, or ``None``: no cap."""


class Slot:
    """One allocation of a target and how many calls it serves now."""

    __slots__ = (
        "allocation_id",
        "dead",
        "in_use",
        "last_used",
        "lease",
        "opened_at",
        "stack",
        "target",
    )

    def __init__(self, target: Target, lease: AsyncLease, stack: AsyncExitStack, now: float):
        self.target = target
        self.lease = lease
        self.allocation_id = lease.id
        """The allocation's id."""
        self.stack = stack
        self.in_use = 0
        self.opened_at = now
        self.last_used = now
        self.dead = False

    def usable(self) -> bool:
        """Whether another call may run on it now."""
        return (
            not self.dead
            and self.in_use < self.target.max_concurrency
            and self.lease.state is LeaseState.ACTIVE
        )


class Group:
    """One target's slots, the leases being made for it, and the callers waiting."""

    __slots__ = ("leasing", "limit", "slots", "target", "waiters")

    def __init__(self, target: Target, limit: int | None) -> None:
        self.target = target
        self.limit = limit
        self.slots: list[Slot] = []
        self.leasing = 0
        # A waiter's future gets a slot (one use already counted for it) or None: lease one.
        self.waiters: deque[asyncio.Future[Slot | None]] = deque()

    def free_slot(self) -> Slot | None:
        for slot in self.slots:
            if slot.usable():
                return slot
        return None

    def may_lease(self) -> bool:
        return self.limit is None or len(self.slots) + self.leasing < self.limit

    def next_waiter(self) -> asyncio.Future[Slot | None] | None:
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                return waiter
        return None
