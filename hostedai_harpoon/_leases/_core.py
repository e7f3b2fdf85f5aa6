"""Everything a lease decides, for both twins: entering (create, wait out full pools, wait
until ready), keeping the allocation alive, work on it, and the state machine. The flows are
generators built of the client's plans (``yield from``), so the client's drivers run them;
``Lease`` and ``AsyncLease`` add only the I/O around them (threads, tasks, signals).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any, ClassVar, Generic, TypeVar

from .. import _telemetry as telemetry
from .._checks import (
    check_gpus,
    check_idempotency_key,
    check_optional_text,
    check_seconds,
    check_text,
    ttl_seconds,
)
from .._config import new_idempotency_key
from .._exceptions import (
    AllocationError,
    CapacityError,
    GoneError,
    HostedAIError,
    NotFoundError,
    ResponseValidationError,
    UsageError,
)
from .._http import _api as api
from .._http import _clock
from .._http import _openai as openai
from .._http._plan import Planner
from .._http._sse import EventReader
from .._http._steps import Call, Flow, Sleep
from .._models import Allocation, AllocationStatus
from .._resilience import RetryPolicy
from ._host import Gate, LeaseHost
from ._release import OrphanedAllocation, for_release, nothing_was_made, release_flow
from ._state import DEFAULT_LEASE_TTL, MIN_RENEW_INTERVAL, TRANSITIONS, LeaseState

__all__ = ["GONE_ERRORS", "LeaseCore"]

log = logging.getLogger("hostedai_harpoon")

T = TypeVar("T")
DriverT = TypeVar("DriverT")
GateT = TypeVar("GateT", bound=Gate)

GONE_ERRORS = (GoneError, NotFoundError)
"""What an answer saying the allocation is gone raises: the lease is then lost."""

# How often a garbled answer to a create is asked again before giving up.
_GARBLED_ANSWER_TRIES = 3


class LeaseCore(Generic[DriverT, GateT]):
    """The decisions of a lease. Attributes a user reads: ``state``, ``allocation``, ``id``,
    ``model``, ``gpus``, ``gpu_type``, ``pool_id``, ``idempotency_key``."""

    # How a user enters this kind of lease, for the message when it was not.
    _how_to_enter: ClassVar[str]

    def __init__(
        self,
        host: LeaseHost[DriverT, GateT],
        *,
        model: str,
        gpus: int,
        gpu_type: str | None,
        pool_id: str | None,
        ttl: float | timedelta | None,
        ready_timeout: float,
        capacity_timeout: float,
        release_timeout: float,
        renew_interval: float | None,
        idempotency_key: str | None,
        inference: str = openai.HOSTEDAI,
    ) -> None:
        self._host = host
        self.inference = openai.check_inference(inference)
        """How the model is reached: ``"hostedai"`` (``POST /v1/inference``), ``"openai"`` or
        ``"openai-completions"`` (the OpenAI-compatible API at the allocation's endpoint)."""
        # The planner of calls to the allocation's endpoint (an OpenAI lease, once ready).
        self._endpoint: Planner | None = None
        self.model = check_text(model, "model")
        self.gpus = check_gpus(gpus)
        self.gpu_type = check_optional_text(gpu_type, "gpu_type")
        self.pool_id = (
            check_optional_text(pool_id, "pool_id") if pool_id is not None else host.pool_id
        )
        self.ttl_seconds = ttl_seconds(ttl)
        self.ready_timeout = check_seconds(ready_timeout, "ready_timeout")
        self.capacity_timeout = check_seconds(capacity_timeout, "capacity_timeout")
        self.release_timeout = check_seconds(release_timeout, "release_timeout", positive=True)
        self._renew_interval = (
            None
            if renew_interval is None
            else check_seconds(renew_interval, "renew_interval", minimum=MIN_RENEW_INTERVAL)
        )
        self.idempotency_key = check_idempotency_key(idempotency_key) or new_idempotency_key()
        self.state = LeaseState.CREATING
        """Where the lease is in its life (``LeaseState``)."""
        self.allocation: Allocation | None = None
        """The allocation as last seen, once the server made it."""
        self.lost_error: AllocationError | None = None
        self._state_lock = threading.Lock()
        # Whether a create may have made the allocation while its id is still unknown.
        self._create_sent = False
        # A create was answered (garbled): the server made something under the key.
        self._create_answered = False
        self._entered = False
        # Releases and renewals: patient, within the release timeout, past the breaker.
        self._release_planner: Planner = for_release(host.planner, self.release_timeout)
        # The place this lease holds under the client's per-pool limit, if any.
        self._slot: GateT | None = None
        # The lease's span and allocation metrics, from entering on.
        self._trace: telemetry.AllocationTrace = telemetry.NO_ALLOCATION

    # State

    def _move(self, to: LeaseState, *, only_from: LeaseState | None = None) -> bool:
        """Take a legal transition; with ``only_from``, only from that state. The keepalive
        thread and the block both move the state, hence the lock."""
        with self._state_lock:
            if to is self.state or (only_from is not None and self.state is not only_from):
                return False
            if to not in TRANSITIONS[self.state]:
                raise AssertionError(f"illegal lease transition {self.state} -> {to}")
            old, self.state = self.state, to
            self._trace.moved(old.value, to.value)
            return True

    @property
    def id(self) -> str:
        """The allocation's id."""
        if self.allocation is None:
            raise AllocationError("the lease has no allocation yet")
        return self.allocation.id

    def _known_id(self) -> str | None:
        return self.allocation.id if self.allocation else None

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} id={self._known_id()!r} model={self.model!r} "
            f"state={self.state.value}>"
        )

    def _check_fresh(self) -> None:
        if self._entered or self.state is not LeaseState.CREATING:
            raise AllocationError(
                "a lease can be entered only once; call client.allocate(...) for another"
            )
        self._entered = True

    def _check_usable(self) -> str:
        """The allocation id, or the reason this lease can take no more work."""
        if self.state is LeaseState.ACTIVE and self.allocation is not None:
            return self.allocation.id
        if self.lost_error is not None:
            raise self.lost_error
        if not self._entered:
            raise UsageError(f"the lease was not entered: use `{self._how_to_enter}`")
        raise AllocationError(
            f"the lease is {self.state.value}; it can take no work",
            allocation_id=self._known_id(),
        )

    def _lose(self, reason: str, cause: BaseException | None = None) -> AllocationError:
        allocation_id = self._known_id()
        error = AllocationError(
            f"allocation {allocation_id} was lost: {reason}", allocation_id=allocation_id
        )
        error.__cause__ = cause
        if self.state is LeaseState.ACTIVE:
            self._trace.errored(error)
        if self._move(LeaseState.LOST, only_from=LeaseState.ACTIVE):
            self.lost_error = error
            log.warning("allocation %s was lost: %s", allocation_id, reason)
        return error

    @property
    def renew_interval(self) -> float:
        """Seconds between renewals: a third of the TTL, so two can fail before expiry."""
        if self._renew_interval is not None:
            return self._renew_interval
        ttl = self.allocation.ttl_seconds if self.allocation else self.ttl_seconds
        return max(0.05, (ttl or DEFAULT_LEASE_TTL) / 3.0)

    # Work on the allocation

    def _prepared(self, call: Call[T]) -> Call[T]:
        """``call`` made to run on the allocation: traced under it, naming its model.
        (Build ``call`` with ``_check_usable()``: a lease that can take no work sends none.)"""
        call.parent = self._trace.work_context()
        if call.model is None:
            call.model = self.model
        return call

    def _inference(
        self,
        stream: bool,
        prompt: str | None,
        messages: object,
        model: str | None,
        max_tokens: int | None,
        temperature: float | None,
        stop: str | list[str] | None,
    ) -> tuple[Planner, Call[Any], Callable[[], EventReader] | None]:
        """One inference on the allocation in the lease's protocol: its planner, its call and
        (streaming) how its events are read. Nothing is built for a lease that takes no work."""
        allocation_id = self._check_usable()
        if self._endpoint is None:
            if messages is not None:
                raise UsageError("messages= needs client.allocate(..., inference='openai')")
            build = api.stream if stream else api.infer
            call = build(allocation_id, prompt, model, max_tokens, temperature, stop)  # type: ignore[arg-type]
            return self._host.planner, self._prepared(call), None
        args = (self.inference, prompt, messages, model or self.model, max_tokens, temperature)
        if stream:
            events = functools.partial(openai.StreamEvents, self.inference)
            return self._endpoint, self._prepared(openai.stream(*args, stop)), events
        return self._endpoint, self._prepared(openai.infer(*args, stop, allocation_id)), None

    def _is_gone(self, exc: GoneError | NotFoundError) -> bool:
        """Whether an answer to work on the allocation says it is gone. An OpenAI server's
        404 names a model or path it does not serve: the server, and the lease, are alive."""
        return self._endpoint is None or isinstance(exc, GoneError)

    def _gone(self, exc: GoneError | NotFoundError) -> AllocationError:
        """An answer saying the allocation is gone: the lease is lost."""
        return self._lose(f"the server answered {exc.status_code} {exc.code}", exc)

    def _work(self, call: Call[T], planner: Planner | None = None) -> Flow[T]:
        """One call on the allocation; an answer saying it is gone marks the lease lost."""
        try:
            return (yield from (planner or self._host.planner).plan(self._prepared(call)))
        except GONE_ERRORS as exc:
            if not self._is_gone(exc):
                raise
            raise self._gone(exc) from exc

    def _renew_call(self, ttl: float | timedelta | None) -> Call[Allocation]:
        return api.renew_allocation(self._check_usable(), ttl)

    # Entering

    def _create(self, planner: Planner, phase: telemetry.SpanTrace) -> Flow[Allocation]:
        """Create (or, with the same key, find again) the allocation.

        A garbled answer is asked again: the server may well have made the allocation, and
        replaying the key is how to learn its id. The lease waits out full pools itself,
        within its capacity timeout.
        """
        tries = 1
        while True:
            call = api.create_allocation(
                self.model,
                self.gpus,
                self.gpu_type,
                self.pool_id,
                self.ttl_seconds,
                self.idempotency_key,
                retry_capacity=False,
            )
            call.parent = phase.context
            try:
                return (yield from planner.plan(call))
            except ResponseValidationError:
                self._create_answered = True
                if tries == _GARBLED_ANSWER_TRIES:
                    raise
                tries += 1

    def _enter_flow(self) -> Flow[Allocation]:
        """Create the allocation (waiting out full pools) and wait until it is ready."""
        self._trace = telemetry.start_allocation(
            model=self.model, gpus=self.gpus, gpu_type=self.gpu_type, pool=self.pool_id
        )
        try:
            return (yield from self._entering())
        except BaseException as exc:
            self._trace.errored(exc)
            raise

    def _entering(self) -> Flow[Allocation]:
        allocation = yield from self._in_phase("create", self._created)
        self.allocation = allocation
        self._trace.allocated(allocation)
        self._move_while_entering(LeaseState.WAITING)
        if allocation.status is not AllocationStatus.READY:
            ready = functools.partial(self._ready, allocation)
            allocation = yield from self._in_phase("wait_ready", ready)
        if self.inference != openai.HOSTEDAI:
            self._endpoint = self._host.endpoint_planner(allocation)
        self._move_while_entering(LeaseState.ACTIVE)
        return allocation

    def _in_phase(self, name: str, flow: Callable[[telemetry.SpanTrace], Flow[T]]) -> Flow[T]:
        """Run ``flow`` inside the span of the lease's phase ``name`` (its calls' parent)."""
        phase = self._trace.phase(name)
        try:
            result = yield from flow(phase)
        except BaseException as exc:
            phase.end(exc)
            raise
        phase.end()
        return result

    def _planned(
        self, call: Call[T], planner: Planner | None = None
    ) -> Callable[[telemetry.SpanTrace], Flow[T]]:
        """A flow that makes ``call`` under a phase's span (patiently, unless ``planner``)."""

        def flow(phase: telemetry.SpanTrace) -> Flow[T]:
            call.parent = phase.context
            return (yield from (planner or self._release_planner).plan(call))

        return flow

    def _created(self, phase: telemetry.SpanTrace) -> Flow[Allocation]:
        """The create, waiting out full pools within the capacity timeout."""
        started = _clock.monotonic()
        waits = RetryPolicy(initial_backoff=0.25, max_backoff=5.0).backoff_delays()
        while True:
            self._create_sent = True
            try:
                return (yield from self._create(self._host.planner, phase))
            except CapacityError as exc:
                self._create_sent = self._create_answered  # a full pool binds nothing to the key
                # Never sooner than the server asked, and backing off if it keeps asking.
                wait = max(exc.retry_after or 0.0, next(waits))
                if _clock.monotonic() + wait - started > self.capacity_timeout:
                    raise AllocationError(
                        f"no capacity for {self.gpus} GPU(s) of {self.model} within "
                        f"{self.capacity_timeout}s"
                    ) from exc
                log.info("pool full for %s; trying again in %.2fs", self.model, wait)
                yield Sleep(wait)
            except HostedAIError as exc:
                if nothing_was_made(exc):
                    self._create_sent = self._create_answered
                raise

    def _ready(self, allocation: Allocation, phase: telemetry.SpanTrace) -> Flow[Allocation]:
        """Poll ``allocation`` until it is ready, within the ready timeout."""
        polls = RetryPolicy(initial_backoff=0.05, max_backoff=2.0, jitter=False).backoff_delays()
        ready_by = _clock.monotonic() + self.ready_timeout
        while allocation.status is not AllocationStatus.READY:
            if allocation.status is not AllocationStatus.PENDING:
                raise AllocationError(
                    f"allocation {allocation.id} is {allocation.status.value}, not ready",
                    allocation_id=allocation.id,
                )
            wait = min(next(polls), max(0.0, ready_by - _clock.monotonic()))
            if wait <= 0:
                raise AllocationError(
                    f"allocation {allocation.id} was not ready within {self.ready_timeout}s",
                    allocation_id=allocation.id,
                )
            yield Sleep(wait)
            poll = self._planned(api.get_allocation(allocation.id), self._host.planner)
            allocation = yield from poll(phase)
            self.allocation = allocation
        return allocation

    def _move_while_entering(self, to: LeaseState) -> None:
        # release() from elsewhere may have run meanwhile: then the lease is over already.
        if to not in TRANSITIONS[self.state]:
            raise AllocationError(
                f"the lease was {self.state.value} while entering", allocation_id=self._known_id()
            )
        self._move(to)

    # Keeping it alive

    def _keepalive_flow(self) -> Flow[None]:
        """Renew the TTL until stopped; mark the lease lost if the server lets it go.
        Renewals skip the breaker, like releases: an unhealthy-looking host is no reason to
        let the allocation expire under the user."""
        while self.state is LeaseState.ACTIVE and self.allocation is not None:
            yield Sleep(self.renew_interval)
            if self.state is not LeaseState.ACTIVE:
                return
            call = api.renew_allocation(self.allocation.id, self.ttl_seconds)
            try:
                renewed = yield from self._in_phase("renew", self._planned(call))
            except (GoneError, NotFoundError) as exc:
                self._lose(f"renewal answered {exc.status_code} {exc.code}", exc)
                return
            except HostedAIError as exc:
                expires_at = self.allocation.expires_at
                if expires_at is not None and expires_at.timestamp() <= _clock.wall():
                    self._lose("renewals failed until the TTL ran out", exc)
                    return
                log.warning("renewing allocation %s failed: %s", self.allocation.id, exc)
                continue
            if self.state is LeaseState.ACTIVE:
                self.allocation = renewed

    # Releasing (the flow itself is in _release.py)

    def _release_flow(self) -> Flow[None]:
        """Release what was created; record an orphan if that proves impossible."""
        if self.state in (LeaseState.RELEASED, LeaseState.ORPHANED):
            return
        self._move(LeaseState.RELEASING)
        try:
            found = yield from self._in_phase("release", self._releasing)
            if found is not None:
                self.allocation = found
            self._move(LeaseState.RELEASED)
        except Exception as exc:  # whatever went wrong, the allocation must not go unrecorded
            raise self._orphaned(f"{type(exc).__name__}: {exc}") from exc

    def _releasing(self, phase: telemetry.SpanTrace) -> Flow[Allocation | None]:
        find = functools.partial(self._replay, phase) if self._create_sent else None
        return (
            yield from release_flow(
                self._release_planner,
                self._known_id(),
                find,
                phase,
                answered=self._create_answered,
            )
        )

    def _replay(self, phase: telemetry.SpanTrace) -> Flow[Allocation]:
        """The create again, with the same key: it answers with what the server made."""
        return self._create(self._release_planner, phase)

    def _interrupted(self, interrupt: BaseException) -> None:
        """The release itself was cut short: what it did not finish is an orphan."""
        if self.state not in (LeaseState.RELEASED, LeaseState.ORPHANED):
            self._move(LeaseState.RELEASING)
            self._orphaned(f"the release was interrupted by {type(interrupt).__name__}")

    def _orphaned(self, why: str) -> AllocationError:
        """Give up on the release: keep the allocation in ``client.orphans()`` and say so."""
        allocation_id = self._known_id()
        error = AllocationError(
            f"could not release allocation {allocation_id}: {why}", allocation_id=allocation_id
        )
        if self.state is LeaseState.RELEASING:
            self._trace.errored(error)
        self._move(LeaseState.ORPHANED, only_from=LeaseState.RELEASING)
        self._host.ledger.add(
            OrphanedAllocation(
                allocation_id=allocation_id,
                idempotency_key=self.idempotency_key,
                model=self.model,
                error=why,
                gpus=self.gpus,
                gpu_type=self.gpu_type,
                pool_id=self.pool_id,
                ttl_seconds=self.ttl_seconds,
                create_answered=self._create_answered,
            )
        )
        log.warning(
            "could not release allocation %s (idempotency key %s): %s; it is kept in "
            "client.orphans()",
            allocation_id,
            self.idempotency_key,
            why,
        )
        return error

    @staticmethod
    def _finish_exit(exc: BaseException | None, release_error: AllocationError | None) -> None:
        """Never mask the block's own exception: attach the release failure to it."""
        if release_error is None:
            return
        if exc is not None:
            exc.add_note(f"hostedai-harpoon: releasing the allocation also failed: {release_error}")
            return
        raise release_error

    def _release_slot(self) -> None:
        """Give up the place under the client's per-pool limit, if this lease holds one."""
        gate, self._slot = self._slot, None
        if gate is not None:
            gate.release()
