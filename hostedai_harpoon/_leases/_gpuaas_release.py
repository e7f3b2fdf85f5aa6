"""Releasing on hosted·ai's platform (the ``gpuaas`` dialect): a team's subscriptions as
listed (every page), unsubscribing and waiting until the row has left the list, and
``reconcile``, which releases what the ledger owns and no live lease or process holds.

``TeamSubscriptions`` holds a client's state on the platform; ``GpuaasPlane``
(``_gpuaas.py``) adds entering a lease and the plain calls.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Final

import attrs

from .._exceptions import AllocationError, ResponseValidationError
from .._http import _clock
from .._http import _gpuaas as wire
from .._http._plan import Planner
from .._http._steps import Flow, Sleep
from .._resilience import RetryPolicy
from ._ledger import SubscriptionLedger, alive, listed_before

__all__ = ["TeamSubscriptions"]

log = logging.getLogger("hostedai_harpoon")

# Pages of the subscription list read at most (of ``wire.PER_PAGE`` rows each).
_MAX_PAGES: Final = 50
# How often one page is asked for while its answers are empty or garbled (about 3 s).
_PAGE_TRIES: Final = 10


@attrs.define
class TeamSubscriptions:
    """A client's team on the platform, its ledger, what a subscribe adds to its body, the
    subscriptions its live leases hold (never released by ``reconcile``) and its subscribes
    in flight."""

    team_id: str
    ledger: SubscriptionLedger
    subscribe_extra: Mapping[str, object] = attrs.field(factory=dict)
    # The subscriptions this client's live leases hold: id -> pool.
    held: dict[str, str] = attrs.field(factory=dict)
    # Made by ``client.create_allocation`` in this process: in the user's hands, so never
    # adopted by a lease (reconcile() may still release them, as the ledger owns them).
    raw: set[str] = attrs.field(factory=set)
    # Subscribes in flight in this process (token -> pool): not dead, whatever the ledger
    # says; a lease naming no pool does not pick theirs.
    in_flight: dict[str, str] = attrs.field(factory=dict)
    choosing: threading.Lock = attrs.field(factory=threading.Lock)

    def rows(self, planner: Planner) -> Flow[list[wire.Subscription]]:
        """This team's subscriptions: every page of the list (which holds every team's rows,
        so this team's may be past the first), at most ``_MAX_PAGES`` of them."""
        rows, _ = yield from self._listing(planner)
        return rows

    def release(self, planner: Planner, subscription_id: str, pool_id: str) -> Flow[None]:
        """Unsubscribe, then wait until the row has left this team's list (within the
        planner's deadline: the lease's release timeout). Unconfirmed: ``AllocationError``."""
        yield from planner.plan(wire.unsubscribe(self.team_id, subscription_id, pool_id))
        polls = RetryPolicy(initial_backoff=0.05, max_backoff=1.0, jitter=False).backoff_delays()
        limit = planner.deadline or 30.0
        gone_by = _clock.monotonic() + limit
        while True:
            try:
                still = yield from self._still_listed(planner, {subscription_id})
            except ResponseValidationError:  # an empty or garbled list says nothing: ask again
                still = None
            if still == {}:
                break
            wait = min(next(polls), gone_by - _clock.monotonic())
            if wait <= 0:
                seen = "not confirmed gone" if still is None else f"still {still[subscription_id]}"
                raise AllocationError(
                    f"subscription {subscription_id} of team {self.team_id} was {seen} "
                    f"{limit}s after unsubscribing",
                    allocation_id=subscription_id,
                )
            yield Sleep(wait)
        self.ledger.forget(subscription_id)
        self.held.pop(subscription_id, None)
        self.raw.discard(subscription_id)
        log.debug("released subscription %s", subscription_id)

    def _listing(self, planner: Planner) -> Flow[tuple[list[wire.Subscription], bool]]:
        """This team's subscriptions, and whether the list took more than one page."""
        first = yield from self._page(planner, 0)
        rows = {row.id: row for row in first.rows}
        for page in range(1, min(first.pages, _MAX_PAGES)):
            more = yield from self._page(planner, page)
            rows.update((row.id, row) for row in more.rows)
        return list(rows.values()), first.pages > 1

    def _page(self, planner: Planner, page: int) -> Flow[wire.SubscriptionPage]:
        """One page of the list. An empty or garbled answer (the platform gives some) says
        nothing: it is asked again, a few times."""
        waits = RetryPolicy(initial_backoff=0.05, max_backoff=0.5, jitter=False).backoff_delays()
        for _ in range(_PAGE_TRIES - 1):
            try:
                return (yield from planner.plan(wire.list_subscriptions(self.team_id, page)))
            except ResponseValidationError:
                yield Sleep(next(waits))
        return (yield from planner.plan(wire.list_subscriptions(self.team_id, page)))

    def _still_listed(self, planner: Planner, ids: AbstractSet[str]) -> Flow[dict[str, str]]:
        """Those of ``ids`` still in this team's list, with their status. A list of several
        pages is read twice before an id counts as gone: a row moves to a page read already
        when rows before it leave while the next page is asked for."""
        rows, paged = yield from self._listing(planner)
        still = {row.id: row.status for row in rows if row.id in ids}
        if paged and len(still) < len(ids):
            again = yield from self.rows(planner)
            still.update((row.id, row.status) for row in again if row.id in ids)
        return still

    def reconcile(self, planner: Planner) -> Flow[list[str]]:
        """Release this team's subscriptions that this ledger owns, whose process is gone
        (or is this one) and that no live lease holds; return their ids. A subscribe whose
        process died before learning its subscription is matched to a row of its pool that
        was not listed before it was sent."""
        rows, paged = yield from self._listing(planner)
        book = self.ledger.snapshot()
        mine: list[wire.Subscription] = []
        claimed: set[str] = set()
        for row in rows:
            entry = book["owned"].get(row.id)
            if type(entry) is dict and row.id not in self.held:
                pid = entry.get("pid")
                if not (type(pid) is int and pid != os.getpid() and alive(pid)):
                    mine.append(row)
                    claimed.add(row.id)
        for token, entry in book["pending"].items():
            pid = entry.get("pid") if type(entry) is dict else None
            if token in self.in_flight or (type(pid) is int and pid != os.getpid() and alive(pid)):
                continue
            before = listed_before(entry)
            for row in rows:
                if (
                    before is not None
                    and row.id not in before
                    and row.id not in claimed
                    and row.id not in self.held
                    and row.id not in book["owned"]
                    and row.pool_id == entry.get("pool_id")
                    and row.live
                ):
                    self.ledger.own(row.id, row.pool_id, token)
                    mine.append(row)
                    claimed.add(row.id)
                    break
            else:
                self.ledger.settle(token)
        unlisted = set(book["owned"]) - {row.id for row in rows} - self.held.keys()
        if paged and unlisted:
            unlisted -= set((yield from self._still_listed(planner, unlisted)))
        for subscription_id in unlisted:
            self.ledger.forget(subscription_id)  # gone already
        released = []
        for row in mine:
            if row.status == "un_subscribing":
                continue  # leaving already
            yield from self.release(planner, row.id, row.pool_id)
            released.append(row.id)
        return released
