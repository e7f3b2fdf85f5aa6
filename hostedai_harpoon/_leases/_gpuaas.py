"""Leases on hosted·ai's platform (the ``gpuaas`` dialect): a subscription per (team, pool).

- entering: list this team's subscriptions, subscribe, then learn the subscription's id
  (from the answer; else from the list: this pool, not yet leaving, not listed before the
  subscribe was sent), then wait for a running pod and the URL its vLLM port is exposed
  at (exposing it when nothing is);
- releasing: unsubscribe, then wait until the row has left the list (``_gpuaas_release.py``);
- the ledger: which subscriptions this client made, kept in a small JSON file so that a new
  process can release what a dead one left (``client.reconcile()``; there is no server TTL).

The plane is shared by a client and its copies; the calls themselves are ``_http/_gpuaas.py``.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Final

import attrs

from .._checks import check_id
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
from ._gpuaas_release import TeamSubscriptions
from ._ledger import SubscriptionLedger, alive
from ._release import OrphanedAllocation, nothing_was_made

__all__ = ["GpuaasPlane", "SubscriptionLedger"]


log = logging.getLogger("hostedai_harpoon")


@attrs.define
class GpuaasPlane(TeamSubscriptions):
    """A client's side of the platform: its team, ledger, what a subscribe adds to its body,
    the subscriptions its live leases hold (never released by ``reconcile``); entering a
    lease, and the plain calls (listing and releasing: ``TeamSubscriptions``)."""

    # Entering ------------------------------------------------------------------------------

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
        subscribe while its subscription is unknown, and ``None`` once it is settled.

        This team's subscriptions are listed first: a row listed then is never taken for
        this subscribe's, whatever the clocks of the client and the platform say. With no
        ``pool_id``, the first pool with ``gpus`` free that the team holds no subscription to
        and no subscribe of this client is in flight for (the platform has no default pool,
        and takes one subscription per team and pool); a pool refused for want of capacity
        (``10189007``) passes to the next, as the platform's own application fails over."""
        rows = yield from self.rows(planner)
        if pool_id is not None:
            named = uuid.uuid4().hex
            self.in_flight[named] = pool_id
            return (yield from self._subscribe_to(planner, pool_id, named, rows, gpus, model, note))
        pools = yield from planner.plan(wire.list_pools(self.team_id))
        refused: CapacityError | None = None
        for pool in pools:
            token = self._reserve(pool, gpus, rows)
            if token is None:
                continue
            try:
                return (yield from self._subscribe_to(planner, pool.id, token, rows, gpus, model,
                                                      note))  # fmt: skip
            except CapacityError as exc:
                refused = exc
                log.info("pool %s refused a subscribe of team %s (%s)", pool.id, self.team_id, exc)
        raise refused or CapacityError(
            f"no pool of team {self.team_id} has {gpus} GPU(s) free and no subscription of "
            "the team yet",
            status_code=503,
        )

    def _reserve(self, pool: Pool, gpus: int, rows: list[wire.Subscription]) -> str | None:
        """A token for a subscribe to ``pool`` (put in ``in_flight``), if it has ``gpus``
        free and neither a subscription of the team nor a subscribe of this client."""
        with self.choosing:  # the sync client's threads choose one at a time
            # (a lease may have taken a pool since ``rows`` was listed)
            taken = {row.pool_id for row in rows} | {*self.in_flight.values(), *self.held.values()}
            if pool.gpus_free < gpus or pool.id in taken:
                return None
            token = uuid.uuid4().hex
            self.in_flight[token] = pool.id
            return token

    def _subscribe_to(
        self,
        planner: Planner,
        pool: str,
        token: str,
        rows: list[wire.Subscription],
        gpus: int,
        model: str,
        note: Callable[[str | None, str], None],
    ) -> Flow[Allocation | None]:
        """Subscribe to ``pool`` under ``token`` (in ``in_flight`` until this ends), the
        team's subscriptions listed just before being ``rows``."""
        before = frozenset(row.id for row in rows if row.pool_id == pool)
        row: wire.Subscription | None
        try:
            self.ledger.sent(pool, datetime.now(UTC), before, token)
            note(token, pool)
            try:
                found = yield from planner.plan(
                    wire.subscribe(self.team_id, pool, gpus, self.subscribe_extra)
                )
            except ConflictError as exc:
                row = yield from self._adoptable(planner, pool, token, before, exc)
            except HostedAIError as exc:
                if nothing_was_made(exc):
                    self.ledger.settle(token)
                    note(None, pool)
                    raise
                row = yield from self._look_for(planner, pool, token, before)
                if row is None:
                    raise
            else:
                if found is None:  # an empty answer: the subscription shows in the list, or not
                    row = yield from self._look_for(planner, pool, token, before)
                    if row is None:
                        return None
                else:
                    row = wire.Subscription(found, pool, self.team_id, "subscribing")
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
            self.held.pop(allocation.id, None)
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
        self.held[row.id] = row.pool_id
        return _allocation(row, model, gpus, AllocationStatus.PENDING, None)

    def _contended(self, pool: str, token: str) -> bool:
        """Whether another subscribe of this client to ``pool`` is in flight (a row that
        shows up may be its, not ``token``'s)."""
        return any(p == pool and t != token for t, p in list(self.in_flight.items()))

    def _adoptable(
        self,
        planner: Planner,
        pool: str,
        token: str,
        before: frozenset[str],
        conflict: ConflictError,
    ) -> Flow[wire.Subscription]:
        """The subscription a 409 "Already subscribed" is about, if this client made it and
        no live lease of it holds it: its ledger says so, or it was not listed before this
        subscribe was sent (a 409 answering a subscribe that worked, as a retrying gateway
        gives) and no other subscribe of this client to the pool is in flight; else the
        ``ConflictError`` naming it."""
        rows = [r for r in (yield from self.rows(planner)) if r.pool_id == pool and r.status]
        row = next((r for r in rows if r.live), rows[0] if rows else None)
        if row is None:
            self.ledger.settle(token)
            raise conflict
        if row.status == "un_subscribing":
            self.ledger.settle(token)
            raise CapacityError(
                f"subscription {row.id} of team {self.team_id} to pool {pool} is still "
                "un_subscribing; the pool can be subscribed again once it has left",
                status_code=409,
                code="un_subscribing",
            ) from conflict
        owner = self.ledger.owner(row.id)
        made_by_this = owner is None and row.id not in before and not self._contended(pool, token)
        if row.id not in self.held.keys() | self.raw and (
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
        self, planner: Planner, pool: str, token: str, before: frozenset[str], tries: int = 4
    ) -> Flow[wire.Subscription | None]:
        """The subscription subscribe ``token`` made to ``pool``: one of this team's, not
        listed ``before`` it was sent, not yet leaving, held by no lease, while no other
        subscribe of this client to the pool is in flight. A few looks, backing off."""
        waits = RetryPolicy(initial_backoff=0.05, max_backoff=1.0, jitter=False).backoff_delays()
        for attempt in range(tries):
            if attempt:
                yield Sleep(next(waits))
            rows = yield from self.rows(planner)
            if self._contended(pool, token):
                continue
            for row in rows:
                if (
                    row.pool_id == pool
                    and row.live
                    and row.id not in self.held.keys() | self.raw
                    and row.id not in before
                ):
                    return row
        return None

    def find_pending(self, planner: Planner, token: str, pool: str) -> Flow[str | None]:
        """The subscription of an unsettled subscribe (``token``), if it shows now."""
        before = self.ledger.before(token)
        if before is None:
            return None
        row = yield from self._look_for(planner, pool, token, before)
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
        self.held.pop(found.id, None)  # no lease holds it: reconcile() may release it
        self.raw.add(found.id)
        return found

    def list_pools(self, planner: Planner) -> Flow[list[Pool]]:
        """The pools this team can subscribe to."""
        return (yield from planner.plan(wire.list_pools(self.team_id)))

    def get_pool(self, planner: Planner, pool_id: str) -> Flow[Pool]:
        """One pool this team can subscribe to."""
        check_id(pool_id, "pool_id")  # before anything is sent, as on v1
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
        if pool_id is not None:
            check_id(pool_id, "pool_id")
        rows = yield from self.rows(planner)
        return [
            _allocation(row, "", row.gpu_count, _STATUS.get(row.status, AllocationStatus.PENDING),
                        None)
            for row in rows
            if pool_id is None or row.pool_id == pool_id
        ]  # fmt: skip

    def get_allocation(self, planner: Planner, allocation_id: str) -> Flow[Allocation]:
        """One of this team's subscriptions (another team's is not found)."""
        check_id(allocation_id, "allocation_id")
        for found in (yield from self.list_allocations(planner, None)):
            if found.id == allocation_id:
                return found
        raise _not_found(allocation_id, self.team_id)

    def release_by_id(self, planner: Planner, allocation_id: str) -> Flow[None]:
        """Release one of this team's subscriptions; one not listed is released already."""
        check_id(allocation_id, "allocation_id")
        rows = yield from self.rows(planner)
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
