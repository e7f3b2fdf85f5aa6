"""Leases on hosted·ai's platform (the ``gpuaas`` dialect): a subscription per (team, pool).

- entering: subscribe, then learn the subscription's id (from the answer; else from this
  team's list: this pool, not yet leaving, made after the request was sent), then wait for a
  running pod and the URL its vLLM port is exposed at (exposing it when nothing is);
- releasing: unsubscribe, then wait until the row has left the list;
- the ledger: which subscriptions this client made, kept in a small JSON file so that a new
  process can release what a dead one left (``client.reconcile()``; there is no server TTL).

The plane is shared by a client and its copies; the calls themselves are ``_http/_gpuaas.py``.
"""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Final

import attrs

from .._exceptions import (
    AllocationError,
    APIStatusError,
    CapacityError,
    ConflictError,
    HostedAIError,
    NotFoundError,
    ResponseValidationError,
)
from .._http import _clock
from .._http import _gpuaas as wire
from .._http._plan import Planner
from .._http._steps import Flow, Sleep
from .._models import Allocation, AllocationStatus, Health, Pool
from .._resilience import RetryPolicy
from ._ledger import SubscriptionLedger, alive
from ._release import OrphanedAllocation, nothing_was_made

__all__ = ["GpuaasPlane", "SubscriptionLedger"]


log = logging.getLogger("hostedai_harpoon")

# Clocks differ: a row made this long before the request was sent may still be its answer.
_CLOCK_SKEW = timedelta(seconds=5)


@attrs.define
class GpuaasPlane:
    """A client's side of the platform: its team, ledger, what a subscribe adds to its body,
    and the subscriptions its live leases hold (never released by ``reconcile``)."""

    team_id: str
    ledger: SubscriptionLedger
    subscribe_extra: Mapping[str, object] = attrs.field(factory=dict)
    held: set[str] = attrs.field(factory=set)
    # Made by ``client.create_allocation`` in this process: in the user's hands, so never
    # adopted by a lease (reconcile() may still release them, as the ledger owns them).
    raw: set[str] = attrs.field(factory=set)
    # Subscribes in flight in this process (token -> pool): not dead, whatever the ledger
    # says; a lease naming no pool does not pick theirs.
    in_flight: dict[str, str] = attrs.field(factory=dict)
    choosing: threading.Lock = attrs.field(factory=threading.Lock)

    # Entering ------------------------------------------------------------------------------

    def default_pool(self, planner: Planner, gpus: int, token: str) -> Flow[str]:
        """The first pool with ``gpus`` free that this team has no subscription to (the
        platform has no default pool, and takes one subscription per team and pool), nor a
        subscribe in flight; reserved for the subscribe ``token`` (in ``in_flight``)."""
        pools = yield from planner.plan(wire.list_pools(self.team_id))
        rows = yield from planner.plan(wire.list_subscriptions(self.team_id))
        with self.choosing:  # the sync client's threads choose one at a time
            taken = {row.pool_id for row in rows} | set(self.in_flight.values())
            for pool in pools:
                if pool.gpus_free >= gpus and pool.id not in taken:
                    self.in_flight[token] = pool.id
                    return pool.id
        raise CapacityError(
            f"no pool of team {self.team_id} has {gpus} GPU(s) free and no subscription of "
            "the team yet",
            status_code=503,
        )

    def subscribe(
        self,
        planner: Planner,
        pool_id: str | None,
        gpus: int,
        model: str,
        note: Callable[[str | None, str], None] = lambda token, pool: None,
    ) -> Flow[Allocation | None]:
        """Subscribe and learn the subscription (``None``: the subscribe may have worked but
        its subscription does not show yet). ``note`` is told the ledger's token of the
        subscribe while its subscription is unknown, and ``None`` once it is settled."""
        token = uuid.uuid4().hex
        if pool_id is None:
            pool = yield from self.default_pool(planner, gpus, token)
        else:
            pool = self.in_flight[token] = pool_id
        row: wire.Subscription | None
        try:
            sent_at = datetime.now(UTC)
            self.ledger.sent(pool, sent_at, token)
            note(token, pool)
            try:
                found = yield from planner.plan(
                    wire.subscribe(self.team_id, pool, gpus, self.subscribe_extra)
                )
            except ConflictError as exc:
                row = yield from self._adoptable(planner, pool, token, sent_at, exc)
            except HostedAIError as exc:
                if nothing_was_made(exc):
                    self.ledger.settle(token)
                    note(None, pool)
                    raise
                row = yield from self._look_for(planner, pool, sent_at)
                if row is None:
                    raise
            else:
                if found is None:  # an empty answer: the subscription shows in the list, or not
                    row = yield from self._look_for(planner, pool, sent_at)
                    if row is None:
                        return None
                else:
                    row = wire.Subscription(found, pool, self.team_id, "subscribing")
            assert row is not None
            allocation = self._owned(row, model, gpus, token)
            note(None, pool)
            return allocation
        finally:
            self.in_flight.pop(token, None)

    def release_lease(
        self, planner: Planner, allocation: Allocation | None, pending: tuple[str, str] | None
    ) -> Flow[None]:
        """A lease's release: its subscription, or the one its unsettled subscribe made."""
        if allocation is not None:
            yield from self.release(planner, allocation.id, allocation.pool_id)
            return
        if pending is None:
            return  # nothing was sent, or the subscribe certainly made nothing
        token, pool = pending
        if token not in self.ledger.snapshot()["pending"]:
            return
        found = yield from self.find_pending(planner, token, pool)
        if found is None:
            raise AllocationError(
                f"a subscribe of team {self.team_id} to pool {pool} may have worked but its "
                "subscription does not show yet; client.reconcile() releases it once it does"
            )
        yield from self.release(planner, found, pool)

    def describe(
        self, allocation: Allocation | None, pending: tuple[str, str] | None, pool_id: str | None
    ) -> str:
        """A lease's subscription as a message names it: its id, pool and team, or, while
        its id is unknown, the pool its subscribe was sent to."""
        if allocation is not None:
            return (
                f"subscription {allocation.id} to pool {allocation.pool_id} of team {self.team_id}"
            )
        pool = pending[1] if pending is not None else pool_id
        return (
            f"the subscription of team {self.team_id} to "
            + ("a pool" if pool is None else f"pool {pool}")
            + " that a subscribe may have made (its id never arrived)"
        )

    def orphan(
        self,
        allocation: Allocation | None,
        pending: tuple[str, str] | None,
        pool_id: str | None,
        model: str,
        gpus: int,
        why: str,
    ) -> OrphanedAllocation:
        """The orphan record of a lease's subscription that could not be released (no
        live lease holds it now: ``reconcile()`` may release it)."""
        if allocation is not None:
            self.held.discard(allocation.id)
            pool_id = allocation.pool_id
        elif pending is not None:
            pool_id = pending[1]
        return OrphanedAllocation(
            allocation_id=None if allocation is None else allocation.id,
            idempotency_key=None,
            model=model,
            error=why,
            gpus=gpus,
            pool_id=pool_id,
            ttl_seconds=None,
            team_id=self.team_id,
        )

    def _owned(
        self, row: wire.Subscription, model: str, gpus: int, token: str | None
    ) -> Allocation:
        self.ledger.own(row.id, row.pool_id, token)
        self.held.add(row.id)
        return _allocation(row, model, gpus, AllocationStatus.PENDING, None)

    def _adoptable(
        self, planner: Planner, pool: str, token: str, sent_at: datetime, conflict: ConflictError
    ) -> Flow[wire.Subscription]:
        """The subscription a 409 "Already subscribed" is about, if this client made it and
        no live lease of it holds it: its ledger says so, or the row was made after this
        very subscribe was sent (a 409 answering a subscribe that worked, as a retrying
        gateway gives; no allowance for clock skew here, unlike a lost answer's look-up);
        else the ``ConflictError`` naming it."""
        rows = yield from planner.plan(wire.list_subscriptions(self.team_id))
        row = next((r for r in rows if r.pool_id == pool and r.status != ""), None)
        if row is None:
            self.ledger.settle(token)
            raise conflict
        if row.status == "un_subscribing":
            self.ledger.settle(token)
            raise CapacityError(
                f"subscription {row.id} to pool {pool} is still un_subscribing; the pool can "
                "be subscribed again once it has left",
                status_code=409,
                code="un_subscribing",
            ) from conflict
        owner = self.ledger.owner(row.id)
        made_by_this = owner is None and row.created_at is not None and row.created_at >= sent_at
        if row.id not in self.held | self.raw and (
            made_by_this or (owner is not None and not (owner != os.getpid() and alive(owner)))
        ):
            return row
        self.ledger.settle(token)
        raise ConflictError(
            f"pool {pool} already has subscription {row.id} of team {self.team_id}, "
            + ("held by a live lease" if owner is not None else "not made by this client"),
            status_code=409,
            code="already_subscribed",
            body=conflict.body,
        ) from conflict

    def _look_for(
        self, planner: Planner, pool: str, sent_at: datetime, tries: int = 4
    ) -> Flow[wire.Subscription | None]:
        """This team's subscription to ``pool`` made after ``sent_at``, not yet leaving and
        not held by a lease: a few looks, backing off."""
        waits = RetryPolicy(initial_backoff=0.05, max_backoff=1.0, jitter=False).backoff_delays()
        for attempt in range(tries):
            if attempt:
                yield Sleep(next(waits))
            rows = yield from planner.plan(wire.list_subscriptions(self.team_id))
            for row in rows:
                if (
                    row.pool_id == pool
                    and row.live
                    and row.id not in self.held
                    and (row.created_at is None or row.created_at >= sent_at - _CLOCK_SKEW)
                ):
                    return row
        return None

    def find_pending(self, planner: Planner, token: str, pool: str) -> Flow[str | None]:
        """The subscription of an unsettled subscribe (``token``), if it shows now."""
        entry = self.ledger.snapshot()["pending"].get(token)
        if type(entry) is not dict:
            return None
        row = yield from self._look_for(planner, pool, datetime.fromisoformat(entry["at"]))
        if row is None:
            return None
        self.ledger.own(row.id, row.pool_id, token)
        return row.id

    def ready(
        self, planner: Planner, allocation: Allocation, ready_timeout: float
    ) -> Flow[Allocation]:
        """Wait for a running pod, then its vLLM port's URL (exposing the port if needed)."""
        polls = RetryPolicy(initial_backoff=0.05, max_backoff=2.0, jitter=False).backoff_delays()
        ready_by = _clock.monotonic() + ready_timeout
        while True:
            try:
                rows = yield from planner.plan(wire.connection_info(self.team_id, allocation.id))
            except ResponseValidationError:  # an empty or garbled answer: no news, ask again
                rows = []
            pods = [pod for row in rows if row.id == allocation.id for pod in row.pods]
            running = next((pod for pod in pods if pod.status == wire.RUNNING), None)
            if pods and all(pod.status.lower() in wire.FAILED for pod in pods):
                raise AllocationError(
                    f"subscription {allocation.id} failed: its pod is {pods[0].status}",
                    allocation_id=allocation.id,
                )
            if running is not None:
                url = running.service_url()
                if url is None:
                    url = yield from planner.plan(wire.expose_service(running.name, allocation.id))
                return attrs.evolve(allocation, status=AllocationStatus.READY, endpoint=url)
            wait = min(next(polls), max(0.0, ready_by - _clock.monotonic()))
            if wait <= 0:
                raise AllocationError(
                    f"subscription {allocation.id} was not ready within {ready_timeout}s "
                    "(no running pod)",
                    allocation_id=allocation.id,
                )
            yield Sleep(wait)

    # Releasing -----------------------------------------------------------------------------

    def release(self, planner: Planner, subscription_id: str, pool_id: str) -> Flow[None]:
        """Unsubscribe, then wait until the row has left this team's list (within the
        planner's deadline: the lease's release timeout). Unconfirmed: ``AllocationError``."""
        yield from planner.plan(wire.unsubscribe(self.team_id, subscription_id, pool_id))
        polls = RetryPolicy(initial_backoff=0.05, max_backoff=1.0, jitter=False).backoff_delays()
        limit = planner.deadline or 30.0
        gone_by = _clock.monotonic() + limit
        while True:
            try:
                rows = yield from planner.plan(wire.list_subscriptions(self.team_id))
            except ResponseValidationError:  # an empty or garbled list says nothing: ask again
                rows = None
            row = None if rows is None else next((r for r in rows if r.id == subscription_id), None)
            if rows is not None and row is None:
                break
            wait = min(next(polls), gone_by - _clock.monotonic())
            if wait <= 0:
                seen = "not confirmed gone" if row is None else f"still {row.status}"
                raise AllocationError(
                    f"subscription {subscription_id} was {seen} {limit}s after unsubscribing",
                    allocation_id=subscription_id,
                )
            yield Sleep(wait)
        self.ledger.forget(subscription_id)
        self.held.discard(subscription_id)
        self.raw.discard(subscription_id)
        log.debug("released subscription %s", subscription_id)

    def reconcile(self, planner: Planner) -> Flow[list[str]]:
        """Release this team's subscriptions that this ledger owns, whose process is gone
        (or is this one) and that no live lease holds; return their ids. Subscribes whose
        process died before learning the subscription are matched to the rows they made."""
        rows = yield from planner.plan(wire.list_subscriptions(self.team_id))
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
            sent_at = datetime.fromisoformat(entry["at"])
            for row in rows:
                if (
                    row.id not in claimed
                    and row.id not in self.held
                    and row.id not in book["owned"]
                    and row.pool_id == entry["pool_id"]
                    and row.live
                    and (row.created_at is None or row.created_at >= sent_at - _CLOCK_SKEW)
                ):
                    self.ledger.own(row.id, row.pool_id, token)
                    mine.append(row)
                    claimed.add(row.id)
                    break
            else:
                self.ledger.settle(token)
        listed = {row.id for row in rows}
        for subscription_id in book["owned"]:
            if subscription_id not in listed and subscription_id not in self.held:
                self.ledger.forget(subscription_id)  # gone already
        released = []
        for row in mine:
            if row.status == "un_subscribing":
                continue  # leaving already
            yield from self.release(planner, row.id, row.pool_id)
            released.append(row.id)
        return released

    # The plain calls -----------------------------------------------------------------------

    def create_allocation(
        self, planner: Planner, pool_id: str | None, gpus: int, model: str
    ) -> Flow[Allocation]:
        """``client.create_allocation``: subscribe and learn the subscription (not ready yet)."""
        found = yield from self.subscribe(planner, pool_id, gpus, model)
        if found is None:
            raise AllocationError(
                "the subscribe was answered with no subscription id, and none showed in the "
                "team's list; it may still appear (client.reconcile() releases it)"
            )
        self.held.discard(found.id)  # no lease holds it: reconcile() may release it
        self.raw.add(found.id)
        return found

    def list_pools(self, planner: Planner) -> Flow[list[Pool]]:
        """The pools this team can subscribe to."""
        return (yield from planner.plan(wire.list_pools(self.team_id)))

    def get_pool(self, planner: Planner, pool_id: str) -> Flow[Pool]:
        """One pool this team can subscribe to."""
        for pool in (yield from self.list_pools(planner)):
            if pool.id == pool_id:
                return pool
        raise NotFoundError(
            f"team {self.team_id} has no pool {pool_id}", status_code=404, code="not_found"
        )

    def health(self, planner: Planner) -> Flow[Health]:
        """The platform has no health endpoint: listing the pools answering is health."""
        yield from self.list_pools(planner)
        return Health(status="ok", version="gpuaas")

    def list_allocations(self, planner: Planner, pool_id: str | None) -> Flow[list[Allocation]]:
        """This team's subscriptions as allocations (other teams' rows never appear)."""
        rows = yield from planner.plan(wire.list_subscriptions(self.team_id))
        return [
            _allocation(row, "", row.gpu_count, _STATUS.get(row.status, AllocationStatus.PENDING),
                        None)
            for row in rows
            if pool_id is None or row.pool_id == pool_id
        ]  # fmt: skip

    def get_allocation(self, planner: Planner, allocation_id: str) -> Flow[Allocation]:
        """One of this team's subscriptions (another team's is not found)."""
        for found in (yield from self.list_allocations(planner, None)):
            if found.id == allocation_id:
                return found
        raise _not_found(allocation_id, self.team_id)

    def release_by_id(self, planner: Planner, allocation_id: str) -> Flow[None]:
        """Release one of this team's subscriptions; one not listed is released already."""
        rows = yield from planner.plan(wire.list_subscriptions(self.team_id))
        row = next((r for r in rows if r.id == allocation_id), None)
        if row is None:
            self.ledger.forget(allocation_id)
            return
        yield from self.release(planner, row.id, row.pool_id)


_STATUS: Final = {
    "subscribing": AllocationStatus.PENDING,
    "subscribed": AllocationStatus.READY,
    "active": AllocationStatus.READY,
    "un_subscribing": AllocationStatus.RELEASING,
}


def _not_found(allocation_id: str, team_id: str) -> APIStatusError:
    return NotFoundError(
        f"team {team_id} has no subscription {allocation_id}", status_code=404, code="not_found"
    )


def _allocation(
    row: wire.Subscription,
    model: str,
    gpus: int,
    status: AllocationStatus,
    endpoint: str | None,
) -> Allocation:
    return Allocation(
        id=row.id,
        pool_id=row.pool_id,
        model=model,
        gpu_count=gpus,
        gpu_type=None,
        status=status,
        endpoint=endpoint,
        created_at=row.created_at or datetime.now(UTC),
        expires_at=None,
        ttl_seconds=None,
    )
