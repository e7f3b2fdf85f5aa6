"""Everything a lease decides, for both twins: entering (create, wait out full pools, wait
until ready), keeping the allocation alive, work on it, and the state machine. The flows are
generators built of the client's plans (``yield from``), so the client's drivers run them;
``Lease`` and ``AsyncLease`` add only the I/O around them (threads, tasks, signals).
"""

from __future__ import annotations

import contextlib
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
    ConfigurationError,
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
from ._state import DEFAULT_LEASE_TTL, MIN_RENEW_INTERVAL, LeaseLife, LeaseState

__all__ = ["GONE_ERRORS", "LeaseCore"]

log = logging.getLogger("hostedai_harpoon")

T = TypeVar("T")
DriverT = TypeVar("DriverT")
GateT = TypeVar("GateT", bound=Gate)

GONE_ERRORS = (GoneError, NotFoundError)
"""What an answer saying the allocation is gone raises: the lease is then lost."""

# How often a garbled answer to a create is asked again before giving up.
_GARBLED_ANSWER_TRIES = 3


class LeaseCore(LeaseLife, Generic[DriverT, GateT]):
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
        max_lifetime: float | None = None,
    ) -> None:
        self._host = host
        if host.gpuaas is not None:
            self._kind = "subscription"
        self.inference = openai.check_inference(inference)
        """How the model is reached: ``"hostedai"`` (``POST /v1/inference``), ``"openai"`` or
        ``"openai-completions"`` (the OpenAI-compatible API at the allocation's endpoint)."""
        if host.gpuaas is not None and self.inference == openai.HOSTEDAI:
            raise ConfigurationError(
                "inference='hostedai' does not exist on the gpuaas dialect: the pod's vLLM "
                "server is reached with inference='openai' (or 'openai-completions')"
            )
        self.max_lifetime = (
            None
            if max_lifetime is None
            else check_seconds(max_lifetime, "max_lifetime", positive=True)
        )
        """Seconds after entering at which the package releases the allocation itself."""
        self._active_since: float | None = None
        # A gpuaas subscribe sent whose subscription is not known yet: its ledger token, pool.
        self._pending: tuple[str, str] | None = None
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

    def _described(self) -> str:
        """The allocation as a message names it: by id, or by the create's idempotency key
        while the server has not answered with an id (on gpuaas: the subscription's terms)."""
        if self._host.gpuaas is not None:
            return self._host.gpuaas.describe(self.allocation, self._pending, self.pool_id)
        if self.allocation is None:
            return (
                f"the allocation created with idempotency key {self.idempotency_key} "
                "(its id never arrived)"
            )
        return f"allocation {self.allocation.id} (idempotency key {self.idempotency_key})"

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
        call = openai.inference_call(
            self.inference, stream, prompt, messages, model, self.model, max_tokens,
            temperature, stop, allocation_id,
        )  # fmt: skip
        events = functools.partial(openai.StreamEvents, self.inference) if stream else None
        return self._endpoint, self._prepared(call), events

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
        plane = self._host.gpuaas
        if plane is not None:
            found = yield from plane.subscribe(
                planner, self.pool_id, self.gpus, self.model, self._note_subscribe
            )
            if found is None:
                raise AllocationError(
                    "the subscribe was answered with no subscription id, and none showed in "
                    "the team's list; it may still appear (client.reconcile() releases it)"
                )
            return found
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

    def _note_subscribe(self, token: str | None, pool_id: str) -> None:
        self._pending = None if token is None else (token, pool_id)

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
        self._active_since = _clock.monotonic()
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
        if self._host.gpuaas is not None:
            ready = self._host.gpuaas.ready(self._host.planner, allocation, self.ready_timeout)
            self.allocation = yield from ready
            return self.allocation
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

    # Keeping it alive

    def _keepalive_flow(self) -> Flow[None]:
        """Renew the TTL until stopped; mark the lease lost if the server lets it go.
        Renewals skip the breaker, like releases: an unhealthy-looking host is no reason to
        let the allocation expire under the user."""
        renews = self._host.gpuaas is None  # the platform has no TTL to renew
        while self.state is LeaseState.ACTIVE and self.allocation is not None:
            left = self._lifetime_left()
            if not renews and left is None:
                return
            yield Sleep(self.renew_interval if left is None else min(left, self.renew_interval))
            if self.state is not LeaseState.ACTIVE:
                return
            left = self._lifetime_left()
            if left is not None and left <= 0:
                self._lose(f"its max_lifetime of {self.max_lifetime}s passed")
                with contextlib.suppress(AllocationError):  # kept in client.orphans()
                    yield from self._release_flow()
                return
            if not renews:
                continue
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

    def _lifetime_left(self) -> float | None:
        if self.max_lifetime is None or self._active_since is None:
            return None
        return self._active_since + self.max_lifetime - _clock.monotonic()

    def _renew_flow(self, ttl: float | timedelta | None) -> Flow[Allocation]:
        """``lease.renew()``: the platform has no TTL, so a gpuaas lease renews nothing."""
        if self._host.gpuaas is None:
            return (yield from self._work(self._renew_call(ttl)))
        self._check_usable()
        assert self.allocation is not None
        return self.allocation

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
        if self._host.gpuaas is not None:
            yield from self._host.gpuaas.release_lease(
                self._release_planner, self.allocation, self._pending
            )
            return None
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
            f"could not release {self._described()}: {why}", allocation_id=allocation_id
        )
        if self.state is LeaseState.RELEASING:
            self._trace.errored(error)
        self._move(LeaseState.ORPHANED, only_from=LeaseState.RELEASING)
        plane = self._host.gpuaas
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
            if plane is None
            else plane.orphan(
                self.allocation, self._pending, self.pool_id, self.model, self.gpus, why
            )
        )
        log.warning("%s; it is kept in client.orphans()", error)
        return error

    def _release_slot(self) -> None:
        """Give up the place under the client's per-pool limit, if this lease holds one."""
        gate, self._slot = self._slot, None
        if gate is not None:
            gate.release()
