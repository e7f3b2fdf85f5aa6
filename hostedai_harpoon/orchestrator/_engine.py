"""One routed call: route over the live state, take a slot, infer, fail over, escalate.

Which failures move a call to the next target is decided once, in ``_failover.py``, for
sessions and one-shot calls alike.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

from .. import (
    AllAttemptsFailedError,
    APITimeoutError,
    AsyncHostedAI,
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
from ._failover import fails_over, judge, pool_full
from ._group import Slot
from ._inflight import InFlight, Tracking
from ._live import LiveState
from ._results import Attempt, RoutedResult
from ._slots import Slots

__all__ = ["Engine", "OpenedStream", "fails_over"]

log = logging.getLogger("hostedai_harpoon")

T = TypeVar("T")


class OpenedStream:
    """A stream whose first chunk arrived: the slot, its cost share and the breaker ticket
    it still holds."""

    def __init__(
        self,
        slot: Slot,
        share: float,
        first: InferenceChunk,
        rest: AsyncIterator[InferenceChunk],
        close: Callable[[], Awaitable[None]],
    ) -> None:
        self.slot = slot
        self.share = share
        self.ticket = False
        self.started = 0.0
        self.first = first
        self.rest = rest
        self.close = close


class Routed:
    """One routed call's request and where it runs: the scope's slots, the policy, the
    targets it may use (``names``; None: all), the scopes it counts in, its deadline."""

    __slots__ = ("deadline", "names", "options", "policy", "request", "scopes", "slots")

    def __init__(
        self,
        slots: Slots,
        policy: RoutingPolicy,
        request: RouteRequest,
        options: dict[str, Any],
        names: frozenset[str] | None,
        scopes: Sequence[InFlight],
        deadline: float | None,
    ) -> None:
        self.slots = slots
        self.policy = policy
        self.request = request
        self.options = options
        self.names = names
        self.scopes = scopes
        self.deadline = deadline


class Engine:
    """Runs routed calls for the orchestrator and its sessions."""

    def __init__(self, client: AsyncHostedAI | None, live: LiveState, *, max_attempts: int) -> None:
        self.client = client
        self.live = live
        self.max_attempts = max_attempts
        self._pools_read: asyncio.Task[None] | None = None

    # Routing

    async def decide(self, call: Routed) -> RouteDecision:
        """Route ``call`` over the live state of the targets it may use. The pools' free
        GPUs are read again in the background when due, so that calls keep the order they
        came in; only when they are unknown (a pool just turned out full) does a call wait
        for the read."""
        reading = self.pools_needed()
        if reading is not None:
            await asyncio.shield(reading)
        return route(call.policy, call.request, self.states(call.names))

    def pools_needed(self) -> asyncio.Task[None] | None:
        """Start reading the pools when due; the read to wait for when they are unknown."""
        live = self.live
        if live.pools_due():
            reading = self.refresh_pools()
            if live.pools_unknown():
                return reading
        return None

    def states(self, names: frozenset[str] | None) -> Sequence[TargetState]:
        """The live states of the targets named (None: all)."""
        states = self.live.states()
        if names is None:
            return states
        return [state for state in states if state.target.name in names]

    def refresh_pools(self) -> asyncio.Task[None]:
        """Start reading the pools' free GPUs, unless a read is under way."""
        reading = self._pools_read
        if reading is None or reading.done():
            reading = self._pools_read = asyncio.get_running_loop().create_task(self._read())
        return reading

    async def read_pools(self) -> None:
        """Read the pools' free GPUs, once for every caller that asks meanwhile."""
        await asyncio.shield(self.refresh_pools())

    async def _read(self) -> None:
        if self.client is None:  # only endpoint targets: no pools to read
            self.live.pools_seen([])
            return
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

    def infer(self, call: Routed) -> Awaitable[RoutedResult]:
        """The routed call, to await: ``_infer``, inside the call's span when telemetry
        records (made current, so that the route decision, a new allocation and the
        inference nest under it). With nothing recording, ``_infer`` itself: no span to
        open and no coroutine layer around it."""
        if not telemetry.recording():
            return self._infer(call)
        return self._traced_infer(call)

    async def _traced_infer(self, call: Routed) -> RoutedResult:
        span = telemetry.start_span("orchestrator.infer", {ROUTE_POLICY: policy_name(call.policy)})
        with telemetry.current(span):
            try:
                routed = await self._infer(call)
            except BaseException as exc:
                span.end(exc)
                raise
        span.annotate({ROUTE_TARGET: routed.decision.target.name, ATTEMPTS: len(routed.attempts)})
        span.end()
        return routed

    async def _infer(self, call: Routed) -> RoutedResult:
        """Route, infer with failover, and climb the cascade when the policy is one, as a
        call in flight in every scope of ``call.scopes``, within the call's deadline."""
        attempts: list[Attempt] = []
        with Tracking(call.scopes):
            return await _within(call.deadline, attempts, self._run(call, attempts))

    async def _run(self, call: Routed, attempts: list[Attempt]) -> RoutedResult:
        started = time.perf_counter()
        decision = await self.decide(call)
        request, options = call.request, call.options
        prompt, max_tokens = request.prompt, request.max_tokens

        def work(slot: Slot) -> Awaitable[InferenceResult]:
            return slot.lease.infer(prompt, max_tokens=max_tokens, **options)

        slots = call.slots
        decision, result = await self._chain(slots, decision, "routed", work, attempts)
        policy = call.policy
        if isinstance(policy, CascadePolicy):
            while (
                step := policy.escalate(request, decision, result, self.states(call.names))
            ) is not None:
                why = step.reason
                decision, result = await self._chain(slots, step, why, work, attempts)
        return RoutedResult(decision, result, tuple(attempts), time.perf_counter() - started)

    async def stream(
        self, call: Routed, attempts: list[Attempt]
    ) -> tuple[RouteDecision, OpenedStream]:
        """``_stream`` inside the call's span (made current), up to the first chunk, within
        the call's deadline."""
        span = telemetry.start_span("orchestrator.stream", {ROUTE_POLICY: policy_name(call.policy)})
        with telemetry.current(span):
            try:
                decision, opened = await _within(
                    call.deadline, attempts, self._stream(call, attempts)
                )
            except BaseException as exc:
                span.end(exc)
                raise
        span.annotate({ROUTE_TARGET: decision.target.name, ATTEMPTS: len(attempts)})
        span.end()
        return decision, opened

    async def _stream(
        self, call: Routed, attempts: list[Attempt]
    ) -> tuple[RouteDecision, OpenedStream]:
        """Route and open a stream, failing over until a first chunk arrives."""
        decision = await self.decide(call)
        request, options = call.request, call.options

        async def work(slot: Slot) -> OpenedStream:
            share = slot.share
            chunks = await slot.lease.stream(
                request.prompt, max_tokens=request.max_tokens, **options
            )
            rest = aiter(chunks)
            try:
                first = await anext(rest)
            except BaseException:
                await chunks.aclose()
                raise
            return OpenedStream(slot, share, first, rest, chunks.aclose)

        return await self._chain(call.slots, decision, "routed", work, attempts)

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
            slot = slots.take(target)
            share = 0.0
            try:
                if slot is None:
                    slot, share = await slots.acquire(target)
                else:
                    share = slot.share
                result = await work(slot)
            except HostedAIError as exc:
                seconds = time.perf_counter() - started
                closed = isinstance(exc, OrchestratorClosedError)
                verdict = "refused" if closed else judge(exc)
                if closed:
                    live.abandoned(name, ticket)
                else:
                    live.finished(name, ticket, verdict, seconds, None)
                cost = 0.0
                held = None
                if slot is not None:
                    held = slot.allocation_id
                    cost = slots.release(slot, share, broken=verdict == "failed")
                attempts.append(Attempt(target, reason, held, exc, seconds, cost))
                if verdict == "refused":
                    raise
                if pool_full(exc):  # read the pools again now, in the background
                    live.pools_stale()
                    self.refresh_pools()
                continue
            except BaseException:
                live.abandoned(name, ticket)
                if slot is not None:
                    slots.release(slot, share)
                raise
            if isinstance(result, OpenedStream):
                result.ticket, result.started = ticket, started
                attempts.append(Attempt(target, reason, slot.allocation_id, None, 0.0))
            else:
                seconds = time.perf_counter() - started
                cost = slots.release(slot, share, seconds=seconds)
                usage = result.usage if isinstance(result, InferenceResult) else None
                live.finished(name, ticket, "ok", seconds, usage)
                attempts.append(Attempt(target, reason, slot.allocation_id, None, seconds, cost))
            if index:
                decision = _moved(decision, target, order[index + 1 :], attempts)
            return decision, result
        raise _exhausted(attempts)


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


async def _within(deadline: float | None, attempts: list[Attempt], work: Awaitable[T]) -> T:
    """Await ``work`` within ``deadline`` seconds (``None``: unbounded); once they have
    passed, ``APITimeoutError`` carrying the attempts made so far."""
    if deadline is None:
        return await work
    try:
        async with asyncio.timeout(deadline) as within:
            return await work
    except TimeoutError:
        if not within.expired():
            raise
        raise _late(deadline, attempts) from None


def _late(deadline: float, attempts: list[Attempt]) -> APITimeoutError:
    """The error of a call whose deadline passed (the attempts so far in its message)."""
    tried = "; ".join(
        f"{attempt.target.name}: {type(attempt.error).__name__}" if attempt.error else ""
        for attempt in attempts
    ).strip("; ")
    return APITimeoutError(
        f"the call's deadline of {deadline:g}s passed"
        + (f" after {len(attempts)} attempt(s) ({tried})" if attempts else "")
    )
