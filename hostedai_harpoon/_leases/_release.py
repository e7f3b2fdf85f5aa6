"""Releasing: every place a GPU is given back, and what happens when that fails.

- the release policy: more patient retries than an ordinary call, no circuit breaker (a
  release is tried even when the host looks unhealthy), bounded by a release timeout;
- ``release_flow``: release by id or, when only the idempotency key is known (the create was
  interrupted), find the allocation first by replaying the create; a replay that proves
  nothing was made ends it;
- ``OrphanedAllocation`` and ``OrphanLedger``: what could not be released, kept until it is;
- ``release_orphans_flow``: ``client.release_orphans()``;
- the guards around a release: Ctrl-C held back (sync), cancellation shielded (async), and
  the interpreter-exit hook for blocks still open.

A lease's own release (``_core.py``) moves its state and then runs ``release_flow``.
"""

from __future__ import annotations

import atexit
import logging
import signal
import threading
import weakref
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Final, Protocol

import attrs

from .. import _telemetry as telemetry
from .._exceptions import (
    APIConnectionError,
    APIStatusError,
    CapacityError,
    CircuitOpenError,
    ConfigurationError,
    HostedAIError,
)
from .._http import _api as api
from .._http._plan import Planner
from .._http._steps import Flow
from .._models import Allocation
from .._resilience import RetryPolicy

if TYPE_CHECKING:
    from ._gpuaas import GpuaasPlane

__all__ = [
    "RELEASE_RETRY",
    "OrphanLedger",
    "OrphanedAllocation",
    "for_release",
    "nothing_was_made",
    "release_flow",
    "release_orphans_flow",
    "run_to_the_end",
    "sigint_deferred",
]

log = logging.getLogger("hostedai_harpoon")

RELEASE_RETRY: Final = RetryPolicy(max_retries=6, initial_backoff=0.1, max_backoff=2.0)
"""Releasing is worth more patience than an ordinary call."""


def for_release(planner: Planner, release_timeout: float) -> Planner:
    """The planner releases (and renewals) use: patient retries within ``release_timeout``,
    and no circuit breaker."""
    return attrs.evolve(planner, retry=RELEASE_RETRY, deadline=release_timeout, breaker=None)


# 4xx answers that do not settle whether an earlier attempt of the same create got through:
# a timeout, a rate limit. (A 409 idempotency_conflict means the key is bound to another
# body: this create, always sent with the same body, made nothing.)
_UNSETTLED_4XX = frozenset({408, 429})


def nothing_was_made(error: BaseException) -> bool:
    """Whether a create call that failed with ``error`` certainly made no allocation.

    A full pool, a request refused before it was sent (the breaker refuses only a call's
    first attempt: a refused retry raises the last attempt's error), a call none of whose
    attempts could connect, and a definite 4xx say so: an earlier attempt that got through
    would have bound the key, and the replay would have answered with its allocation.
    Anything else (a timeout, a 5xx, a 429) leaves it open.
    """
    if isinstance(error, CapacityError | ConfigurationError | CircuitOpenError):
        return True
    if isinstance(error, APIConnectionError):
        return error._unsent  # every attempt failed to connect
    return (
        isinstance(error, APIStatusError)
        and 400 <= error.status_code < 500
        and error.status_code not in _UNSETTLED_4XX
    )


def replay_proves_nothing_made(error: HostedAIError, *, answered: bool) -> bool:
    """Whether a *replayed* create failing with ``error`` proves the first made nothing.

    Not when a replay could not connect (it says nothing about the first create), nor when
    the first create was answered (garbled: the server made something under the key).
    """
    return not answered and not isinstance(error, APIConnectionError) and nothing_was_made(error)


def release_flow(
    planner: Planner,
    allocation_id: str | None,
    find: Callable[[], Flow[Allocation]] | None,
    phase: telemetry.SpanTrace = telemetry.NO_SPAN,
    *,
    answered: bool = False,
) -> Flow[Allocation | None]:
    """Release ``allocation_id``; without one, ``find`` it first (replaying its create;
    ``answered``: that create got an answer, so something was made). The release call is
    traced under ``phase``.

    Returns the allocation found by the replay (``None`` when the id was known, or when the
    replay proved that nothing was made).
    """
    found: Allocation | None = None
    if allocation_id is None:
        if find is None:
            return None
        try:
            found = yield from find()
        except HostedAIError as exc:
            if replay_proves_nothing_made(exc, answered=answered):
                return None
            raise
        allocation_id = found.id
    call = api.release_allocation(allocation_id)
    call.parent = phase.context
    yield from planner.plan(call)
    log.debug("released allocation %s", allocation_id)
    return found


@attrs.frozen
class OrphanedAllocation:
    """An allocation the SDK could not release: it may still be billing.

    ``allocation_id`` is ``None`` when only the idempotency key is known (the create may
    or may not have happened). Release it with ``client.release_orphans()`` or by hand.

    On hosted·ai's platform (``dialect="gpuaas"``) it is a subscription: ``allocation_id``
    is the subscription's id (``None`` when the subscribe's answer never came), ``pool_id``
    its pool and ``team_id`` its team; ``idempotency_key`` and ``ttl_seconds`` are ``None``
    (the platform has neither); ``client.reconcile()`` also releases it.
    """

    allocation_id: str | None
    idempotency_key: str | None
    model: str
    error: str
    gpus: int = 1
    gpu_type: str | None = None
    pool_id: str | None = None
    ttl_seconds: int | None = None
    create_answered: bool = False
    """The create was answered (garbled): something was made under the key."""
    team_id: str | None = None
    """The team of a ``gpuaas`` subscription (``None`` on v1)."""


class OrphanLedger:
    """The allocations a client could not release. An orphan leaves it only once released,
    so an interrupted or failing clean-up loses none. Shared by a client and its copies."""

    def __init__(self) -> None:
        self._orphans: list[OrphanedAllocation] = []
        self._lock = threading.Lock()  # keepalive threads and the block record orphans

    def add(self, orphan: OrphanedAllocation) -> None:
        """Record an allocation that could not be released."""
        with self._lock:
            self._orphans.append(orphan)

    def snapshot(self) -> list[OrphanedAllocation]:
        """The orphans now, oldest first."""
        with self._lock:
            return list(self._orphans)

    def discard(self, orphan: OrphanedAllocation) -> None:
        """Forget an orphan that is released now."""
        with self._lock:
            for index, held in enumerate(self._orphans):
                if held is orphan:
                    del self._orphans[index]
                    return


def _release_orphan_flow(orphan: OrphanedAllocation, planner: Planner) -> Flow[Allocation | None]:
    key = orphan.idempotency_key

    def find() -> Flow[Allocation]:
        return planner.plan(
            api.create_allocation(
                orphan.model,
                orphan.gpus,
                orphan.gpu_type,
                orphan.pool_id,
                orphan.ttl_seconds,
                key,
                retry_capacity=False,
            )
        )

    replay = None if key is None else find  # (a replay under a new key would make another)
    return release_flow(planner, orphan.allocation_id, replay, answered=orphan.create_answered)


def release_orphans_flow(
    ledger: OrphanLedger,
    planner: Planner,
    release_timeout: float,
    gpuaas: GpuaasPlane | None = None,
) -> Flow[list[OrphanedAllocation]]:
    """Try again to release every orphan; return those still held. Each leaves the ledger
    only once released, whatever interrupts the loop. (On ``gpuaas``, an orphan whose
    subscription is unknown is left to ``client.reconcile()``.)"""
    patient = for_release(planner, release_timeout)
    still: list[OrphanedAllocation] = []
    for orphan in ledger.snapshot():
        try:
            if gpuaas is None:
                yield from _release_orphan_flow(orphan, patient)
            elif orphan.allocation_id is not None:
                yield from gpuaas.release_by_id(patient, orphan.allocation_id)
            else:
                yield from gpuaas.reconcile(patient)
        except HostedAIError:
            still.append(orphan)
        else:
            ledger.discard(orphan)
    return still


# Guards around a release -------------------------------------------------------------------


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold back Ctrl-C while a release runs (main thread only), then deliver it. A second
    Ctrl-C means it: it interrupts the release (which then records an orphan)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[object] = []

    def hold(signum: int, frame: object) -> None:
        if pending:
            pending.clear()
            raise KeyboardInterrupt
        pending.append(signum)
        log.warning("Ctrl-C: releasing the GPU allocation first; press Ctrl-C again to abandon it")

    try:
        previous = signal.signal(signal.SIGINT, hold)
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            signal.raise_signal(signal.SIGINT)  # now the program's own handler sees it


async def run_to_the_end(
    coro: Coroutine[Any, Any, None], limit: float
) -> tuple[BaseException | None, bool]:
    """Run ``coro`` to its end, for at most ``limit`` seconds, even if the caller is cancelled
    meanwhile; say what it raised (``None``: nothing) and whether the caller was cancelled."""
    import asyncio  # here, not at the top: sync users should not pay for importing it

    task = asyncio.ensure_future(asyncio.wait_for(coro, limit))
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait((task,))
        except asyncio.CancelledError:
            cancelled = True
    if task.cancelled():  # cancelled from outside, as at event-loop shutdown
        return asyncio.CancelledError("the release was cancelled"), cancelled
    return task.exception(), cancelled


# Interpreter exit --------------------------------------------------------------------------


class _OpenLease(Protocol):
    _kind: str  # what it holds: an allocation, or a subscription

    def _release_at_exit(self) -> None: ...


open_leases: weakref.WeakSet[_OpenLease] = weakref.WeakSet()
"""Leases inside their block: released by the interpreter-exit hook if still open then."""


@atexit.register
def _release_open_leases() -> None:
    for lease in list(open_leases):
        log.warning("releasing %s of %r at interpreter exit", lease._kind, lease)
        try:
            lease._release_at_exit()
        except Exception as exc:  # best effort: nothing may stop the others
            log.warning("releasing %r at exit failed: %s", lease, exc)
