"""What a scope spends: allocations' cost, idle cost, what is committed, and a budget kept.

``Spending`` is the money half of ``Slots`` (which inherits it): read from the slots, the
leases being made and the releases under way; a budget is kept by refusing what would not
fit and by letting idle allocations go once no further call would (docs/orchestrator.md,
"Budgets").
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable

from .. import HostedAIError
from ..routing import Target
from ._group import Group, Slot

__all__ = ["Spending"]

log = logging.getLogger("hostedai_harpoon")


class Spending:
    """The money of one scope; ``Slots`` provides the state and the three actions below."""

    _clock: Callable[[], float]
    _budget: float | None
    _groups: dict[str, Group]
    _held: set[Slot]
    _making: dict[asyncio.Task[Slot | None], tuple[float, Target]]
    _watch: asyncio.TimerHandle | None
    _spent: float
    _idle: float
    closed: bool

    def _drop(self, group: Group, slot: Slot) -> None:
        raise NotImplementedError

    def _close_later(self, slot: Slot) -> None:
        raise NotImplementedError

    def _refusal(self, group: Group, why: str) -> HostedAIError:
        raise NotImplementedError

    def spent(self) -> float:
        """Dollars spent so far: every allocation's seconds from the start of its lease to
        the end of its release, at its hourly price."""
        now = self._clock()
        total = self._spent + sum(slot.cost(now) for slot in self._held)
        return total + sum(
            (now - since) * target.cost_per_hour / 3600.0 for since, target in self._making.values()
        )

    def idle_cost(self) -> float:
        """Of ``spent()``, the dollars of time with no call on the allocation: making it,
        keeping it warm, releasing it."""
        now = self._clock()
        total = self._idle
        for slot in self._held:
            total += slot.idle_cost
            if not slot.in_use:
                total += (now - slot.marked) * slot.price
        return total + sum(
            (now - since) * target.cost_per_hour / 3600.0 for since, target in self._making.values()
        )

    def idle_by_target(self) -> dict[str, float]:
        """The idle cost of the allocations held now, per target name."""
        now = self._clock()
        idle: dict[str, float] = {}
        for slot in self._held:
            cost = slot.idle_cost + (0.0 if slot.in_use else (now - slot.marked) * slot.price)
            idle[slot.target.name] = idle.get(slot.target.name, 0.0) + cost
        return idle

    def committed(self, *, queued: bool = True) -> float:
        """What is spent plus what is already bound to be: each busy allocation's calls,
        each lease's remaining making and first call, every release and (``queued``) a
        share of an allocation's time for each caller waiting."""
        total = self.spent()
        for group in self._groups.values():
            price = group.target.cost_per_hour / 3600.0
            call = group.call_seconds.value
            busy = sum(1 for slot in group.slots if slot.in_use)
            total += price * busy * call
            total += price * group.leasing * (group.lease_seconds.value + call)
            if queued:  # each caller waiting: a share of an allocation's time for one call
                total += price * group.waiting * call / group.target.max_concurrency
            if group.target.endpoint is None:
                live = len(group.slots) + group.leasing + group.releasing
                total += price * live * group.release_seconds.value
        return total

    def _new_allocation_cost(self, group: Group) -> float:
        """What one more allocation of ``group`` costs at least: leased, one call, released."""
        price = group.target.cost_per_hour / 3600.0
        seconds = group.lease_seconds.value + group.call_seconds.value
        return price * (seconds + group.release_seconds.value)

    def _spent_out(self) -> bool:
        """With a budget: whether what is spent and bound to be (the callers waiting left
        out) reached it; if so the callers still waiting, who sent nothing yet, are refused."""
        budget = self._budget
        if budget is None or self.committed(queued=False) < budget:
            return False
        for group in self._groups.values():
            group.refuse_waiters(functools.partial(self._refusal, group, "budget"))
        return True

    def mind_budget(self) -> None:
        """With a budget: release idle allocations once no further call could fit, and look
        again when, at the current rate, that will be so."""
        budget = self._budget
        if budget is None or self.closed:
            return
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        idle = [
            (g, s)
            for g in self._groups.values()
            for s in g.slots
            if not s.in_use and not s.endpoint
        ]
        if not idle:
            return
        headroom = budget - self.committed()
        cheapest = min(slot.price * group.call_seconds.value for group, slot in idle)
        if headroom < cheapest:
            for group, slot in idle:
                log.info("budget reached: releasing idle allocation %s", slot.allocation_id)
                self._drop(group, slot)
                self._close_later(slot)
            return
        rate = sum(slot.price for slot in self._held)
        if rate > 0.0:
            wait = (headroom - cheapest) / rate
            self._watch = asyncio.get_running_loop().call_later(wait, self.mind_budget)
