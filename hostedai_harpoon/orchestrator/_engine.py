"""One routed call: route over the live state, take a slot, infer, fail over, escalate.

Which failures move a call to the next target (``fails_over``) is decided here, once, for
sessions and one-shot calls alike: a failure that says nothing about the request (the
connection, a timeout, a 5xx or 429 after the client's retries, a full pool, an open
breaker, an allocation lost, gone or never ready) fails over; a request error (400, 401,
403, 404, 422, or anything else the client cannot fix by going elsewhere) is raised at once.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from .. import (
    AllAttemptsFailedError,
    AllocationError,
    APIError,
    APIStatusError,
    AsyncHostedAI,
    CapacityError,
    CircuitOpenError,
    HostedAIError,
    InferenceChunk,
    InferenceResult,
    OrchestratorClosedError,
)
from .. import _telemetry as telemetry
from .._telemetry import policy_name
from .._telemetry._names import ATTEMPTS, ROUTE_POLICY, ROUTE_TARGET
from ..routing import (
    CascadePolicy,
    RouteDecision,
    RouteRequest,
    RoutingPolicy,
    Target,
    TargetState,
    route,
)
from ._group import Slot
from ._inflight import InFlight, closed_instead
from ._live import LiveState
from ._results import Attempt, RoutedResult
from ._slots import Slots

__all__ = ["Engine", "OpenedStream", "fails_over"]

log = logging.getLogger("hostedai_harpoon")

T = TypeVar("T")

# Statuses that fault the request, not the target: going elsewhere would not help.
_REQUEST_STATUSES = frozenset({400, 401, 403, 404, 422})
_TARGET_STATUSES = frozenset({408, 409, 410, 429})


def fails_over(error: HostedAIError) -> bool:
    """Whether a call that failed with ``error`` should move to another target."""
    if isinstance(error, APIStatusError):
        status = error.status_code
        return status not in _REQUEST_STATUSES and (status >= 500 or status in _TARGET_STATUSES)
    return isinstance(error, APIError | CircuitOpenError | AllocationError)


def _pool_full(error: HostedAIError) -> bool:
    return isinstance(error, CapacityError) or isinstance(error.__cause__, CapacityError)


class OpenedStream:
    """A stream whose first chunk arrived: the slot and breaker ticket it still holds."""

    def __init__(
        self,
        slot: Slot,
        ticket: bool,
        started: float,
        first: InferenceChunk,
        rest: AsyncIterator[InferenceChunk],
        close: Callable[[], Awaitable[None]],
    ) -> None:
        self.slot = slot
        self.ticket = ticket
        self.started = started
        self.first = first
        self.rest = rest
        self.close = close


class Engine:
    """Runs routed calls for the orchestrator and its sessions."""

    def __init__(self, client: AsyncHostedAI, live: LiveState, *, max_attempts: int) -> None:
        self.client = client
        self.live = live
        self.max_attempts = max_attempts
        self._pools_read: asyncio.Task[None] | None = None

    # Routing

    async def decide(
        self, policy: RoutingPolicy, request: RouteRequest, names: frozenset[str] | None
    ) -> RouteDecision:
        """Route ``request`` over the live state of the targets named (None: all)."""
        if self.live.pools_due():
            await self.read_pools()
        return route(policy, request, self.states(names))

    def states(self, names: frozenset[str] | None) -> Sequence[TargetState]:
        """The live states of the targets named (None: all)."""
        states = self.live.states()
        if names is None:
            return states
        return [state for state in states if state.target.name in names]

    async def read_pools(self) -> None:
        """Read the pools' free GPUs, once for every caller that asks meanwhile."""
        reading = self._pools_read
        if reading is None or reading.done():
            reading = self._pools_read = asyncio.get_running_loop().create_task(self._read())
        await asyncio.shield(reading)

    async def _read(self) -> None:
        try:
            pools = await self.client.list_pools()
        except HostedAIError as exc:
            log.info("could not read the pools' free GPUs: %s", exc)
            self.live.pools_seen(None)
            return
        self.live.pools_seen(pools)

    def stop(self) -> None:
        """Stop a pool read in progress (the orchestrator is closing)."""
        if self._pools_read is not None:
            self._pools_read.cancel()

    # Calls

    def infer(
        self,
        slots: Slots,
        policy: RoutingPolicy,
        request: RouteRequest,
        temperature: float | None,
        stop: str | list[str] | None,
        names: frozenset[str] | None,
        scopes: Sequence[InFlight],
    ) -> Awaitable[RoutedResult]:
        """The routed call, to await: ``_infer``, inside the call's span when telemetry
        records (made current, so that the route decision, a new allocation and the
        inference nest under it). With nothing recording, ``_infer`` itself: no span to
        open and no coroutine layer around it."""
        if not telemetry.recording():
            return self._infer(slots, policy, request, temperature, stop, names, scopes)
        return self._traced_infer(slots, policy, request, temperature, stop, names, scopes)

    async def _traced_infer(
        self,
        slots: Slots,
        policy: RoutingPolicy,
        request: RouteRequest,
        temperature: float | None,
        stop: str | list[str] | None,
        names: frozenset[str] | None,
        scopes: Sequence[InFlight],
    ) -> RoutedResult:
        span = telemetry.start_span("orchestrator.infer", {ROUTE_POLICY: policy_name(policy)})
        with telemetry.current(span):
            try:
                routed = await self._infer(slots, policy, request, temperature, stop, names, scopes)
            except BaseException as exc:
                span.end(exc)
                raise
        span.annotate({ROUTE_TARGET: routed.decision.target.name, ATTEMPTS: len(routed.attempts)})
        span.end()
        return routed

    async def _infer(
        self,
        slots: Slots,
        policy: RoutingPolicy,
        request: RouteRequest,
        temperature: float | None,
        stop: str | list[str] | None,
        names: frozenset[str] | None,
        scopes: Sequence[InFlight],
    ) -> RoutedResult:
        """Route, infer with failover, and climb the cascade when the policy is one.

        The call counts as in flight in every scope of ``scopes`` (as with ``guarded``,
        done here to spare every call a layer): a cancellation that only closing scopes
        caused becomes ``OrchestratorClosedError``.
        """
        task = asyncio.current_task()
        if task is None:  # pragma: no cover - asyncio always runs coroutines in a task
            raise RuntimeError("the orchestrator must be called from an asyncio task")
        for scope in scopes:
            scope.enter(task)
        try:
            started = time.perf_counter()
            live = self.live
            if live.pools_due():
                await self.read_pools()
            states = live.states() if names is None else self.states(names)
            decision = route(policy, request, states)
            prompt, max_tokens = request.prompt, request.max_tokens

            def work(slot: Slot) -> Awaitable[InferenceResult]:
                return slot.lease.infer(
                    prompt, max_tokens=max_tokens, temperature=temperature, stop=stop
                )

            attempts: list[Attempt] = []
            decision, result = await self._chain(slots, decision, "routed", work, attempts)
            if isinstance(policy, CascadePolicy):
                while (
                    step := policy.escalate(request, decision, result, self.states(names))
                ) is not None:
                    why = step.reason
                    decision, result = await self._chain(slots, step, why, work, attempts)
            return RoutedResult(decision, result, tuple(attempts), time.perf_counter() - started)
        except asyncio.CancelledError:
            closed = closed_instead(task, *scopes)
            if closed is None:
                raise
            raise closed from None
        finally:
            for scope in scopes:
                scope.leave(task)

    async def stream(
        self,
        slots: Slots,
        policy: RoutingPolicy,
        request: RouteRequest,
        options: dict[str, Any],
        names: frozenset[str] | None,
        attempts: list[Attempt],
    ) -> tuple[RouteDecision, OpenedStream]:
        """``_stream`` inside the call's span (made current), up to the first chunk."""
        span = telemetry.start_span("orchestrator.stream", {ROUTE_POLICY: policy_name(policy)})
        with telemetry.current(span):
            try:
                decision, opened = await self._stream(
                    slots, policy, request, options, names, attempts
                )
            except BaseException as exc:
                span.end(exc)
                raise
        span.annotate({ROUTE_TARGET: decision.target.name, ATTEMPTS: len(attempts)})
        span.end()
        return decision, opened

    async def _stream(
        self,
        slots: Slots,
        policy: RoutingPolicy,
        request: RouteRequest,
        options: dict[str, Any],
        names: frozenset[str] | None,
        attempts: list[Attempt],
    ) -> tuple[RouteDecision, OpenedStream]:
        """Route and open a stream, failing over until a first chunk arrives."""
        decision = await self.decide(policy, request, names)

        async def work(slot: Slot) -> OpenedStream:
            chunks = await slot.lease.stream(
                request.prompt, max_tokens=request.max_tokens, **options
            )
            rest = aiter(chunks)
            try:
                first = await anext(rest)
            except BaseException:
                await chunks.aclose()
                raise
            return OpenedStream(slot, False, 0.0, first, rest, chunks.aclose)

        return await self._chain(slots, decision, "routed", work, attempts)

    async def _chain(
        self,
        slots: Slots,
        decision: RouteDecision,
        reason: str,
        work: Callable[[Slot], Awaitable[T]],
        attempts: list[Attempt],
    ) -> tuple[RouteDecision, T]:
        """Try the decision's target, then its fallbacks, up to ``max_attempts``.

        Each try runs ``work`` on a slot of its target; a failure that says nothing about
        the request moves on to the next target. A stream that opened keeps its slot and
        breaker ticket until it is closed. (One loop, no helper per try: this runs on
        every call.)
        """
        live = self.live
        fallbacks = decision.fallbacks
        if fallbacks:
            order = (decision.target, *fallbacks)[: self.max_attempts]
        else:
            order = (decision.target,)
        for index, target in enumerate(order):
            if index:
                live.failed_over(order[index - 1].name)
                telemetry.failed_over(order[index - 1].name, target.name, attempts[-1].error)
                reason = "failover"
            name = target.name
            started = time.perf_counter()
            try:
                ticket = live.begin(name)
            except CircuitOpenError as exc:
                attempts.append(Attempt(target, reason, None, exc, 0.0))
                continue
            slot: Slot | None = None
            try:
                slot = slots.take(target) or await slots.acquire(target)
                result = await work(slot)
            except OrchestratorClosedError:
                live.abandoned(name, ticket)
                _give_back(slots, slot, False)
                raise
            except HostedAIError as exc:
                seconds = time.perf_counter() - started
                moves_on = fails_over(exc)
                live.finished(name, ticket, "failed" if moves_on else "refused", seconds, None)
                held = None if slot is None else slot.allocation_id
                attempts.append(Attempt(target, reason, held, exc, seconds))
                _give_back(slots, slot, moves_on)
                if not moves_on:
                    raise
                if _pool_full(exc):
                    live.pools_stale()
                continue
            except BaseException:
                live.abandoned(name, ticket)
                _give_back(slots, slot, False)
                raise
            if isinstance(result, OpenedStream):
                result.ticket, result.started = ticket, started
                seconds = 0.0
            else:
                seconds = time.perf_counter() - started
                slots.release(slot)
                usage = result.usage if isinstance(result, InferenceResult) else None
                live.finished(name, ticket, "ok", seconds, usage)
            attempts.append(Attempt(target, reason, slot.allocation_id, None, seconds))
            if index:
                decision = _moved(decision, target, order[index + 1 :], attempts)
            return decision, result
        raise _exhausted(attempts)


def _give_back(slots: Slots, slot: Slot | None, broken: bool) -> None:
    if slot is not None:
        slots.release(slot, broken=broken)


def _moved(
    decision: RouteDecision, target: Target, rest: Sequence[Target], attempts: list[Attempt]
) -> RouteDecision:
    """The decision a failover ended on: its target, why, and what is left to fall back to."""
    failed = "; ".join(
        f"{attempt.target.name}: {attempt.error}" for attempt in attempts if attempt.error
    )
    return RouteDecision(
        target,
        f"failed over to {target.name} ({failed}); first choice: {decision.reason}",
        decision.scores,
        tuple(rest),
    )


def _exhausted(attempts: list[Attempt]) -> AllAttemptsFailedError:
    reasons = {
        attempt.target.name: f"{type(attempt.error).__name__}: {attempt.error}"
        for attempt in attempts
        if attempt.error is not None
    }
    detail = "; ".join(f"{name}: {why}" for name, why in reasons.items())
    return AllAttemptsFailedError(
        f"every attempt failed ({detail})", attempts=tuple(attempts), reasons=reasons
    )
