"""``Session``: a scope of GPU use, ``async with orchestrator.allocate(...) as session``."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

from .. import BudgetExceededError, HostedAIError, OrchestratorClosedError
from ..routing import RoutingPolicy, Target, Tier
from ._checks import routed_request
from ._engine import Engine
from ._inflight import InFlight, guarded, settle
from ._results import RoutedResult
from ._slots import Slots
from ._stream import RoutedStream

__all__ = ["Session", "inference_options"]

# How long leaving a session waits for the calls it cut off to let go of their leases.
_CUT_OFF_GRACE = 30.0


def inference_options(temperature: float | None, stop: str | list[str] | None) -> dict[str, Any]:
    """The options passed on to ``lease.infer`` / ``lease.stream`` besides the prompt."""
    return {"temperature": temperature, "stop": stop}


class Session:
    """A scope of GPU use: calls routed per request on allocations leased for the scope.

    Made by ``Orchestrator.allocate(...)``; use it as ``async with ... as session``.
    Each call routes over the live state, then runs on an allocation the session already
    holds for the chosen target or on one it leases then; one allocation takes up to the
    target's ``max_concurrency`` calls at once, and at ``max_allocations`` further callers
    wait their turn. Leaving the block cancels the calls still in flight (they raise
    ``OrchestratorClosedError``) and releases every allocation the session leased, however
    the block is left. Safe to use from many tasks at once.
    """

    def __init__(
        self,
        engine: Engine,
        slots: Slots,
        policy: RoutingPolicy,
        names: frozenset[str] | None,
        prewarm: Sequence[Target],
        budget: float | None,
        outer: InFlight,
        check_open: Callable[[], None],
        on_close: Callable[[Session], None],
    ) -> None:
        self._engine = engine
        self._slots = slots
        self._policy = policy
        self._names = names
        self._prewarm = prewarm
        self._budget = budget
        self._calls = InFlight()
        self._scopes = (outer, self._calls)
        self._check_open = check_open
        self._on_close = on_close
        self._entered = False
        self._closed = False

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Session {state} calls_in_flight={len(self._calls)} spent=${self.spent:.6f}>"

    @property
    def spent(self) -> float:
        """Estimated dollars spent: the GPU-seconds the session held, at each target's price."""
        return self._slots.spent()

    @property
    def budget(self) -> float | None:
        """The most the session may spend, in dollars (``None``: no cap)."""
        return self._budget

    async def __aenter__(self) -> Session:
        if self._entered:
            raise HostedAIError("a session can be entered only once; call allocate() again")
        self._entered = True
        self._check_open()
        if self._prewarm:
            try:  # leasing counts as a call in flight: closing the orchestrator cuts it off
                await guarded(self._lease_prewarm, self._scopes[:1])
            except BaseException:
                await self.aclose()
                raise
        return self

    async def _lease_prewarm(self) -> None:
        leasing = [asyncio.ensure_future(self._slots.open(t)) for t in self._prewarm]
        try:
            await asyncio.gather(*leasing)
        except BaseException:
            for task in leasing:
                task.cancel()
            await settle(leasing)
            raise

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel the calls in flight and release every allocation. Idempotent."""
        if self._closed:
            await self._slots.aclose()  # another closer may still be at it: wait for it too
            return
        self._closed = True
        try:
            self._calls.cut_off(except_task=asyncio.current_task())
            await settle([asyncio.ensure_future(self._calls.drained(_CUT_OFF_GRACE))])
        finally:
            try:
                await self._slots.aclose()
            finally:
                self._on_close(self)  # only now: closing the orchestrator waits for this

    def _check(self) -> None:
        if self._closed or not self._entered:
            raise OrchestratorClosedError(
                "the session is closed" if self._closed else "use `async with` to open it"
            )
        self._check_open()
        if self._budget is not None:
            spent = self._slots.spent()
            if spent >= self._budget:
                raise BudgetExceededError(
                    f"the session's budget of ${self._budget:.7g} is spent "
                    f"(${spent:.7g} so far); the call was not sent",
                    budget=self._budget,
                    spent=spent,
                )

    async def infer(
        self,
        prompt: str,
        *,
        max_tokens: int = 256,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
        target: Target | str | None = None,
        tier: Tier | str | None = None,
    ) -> RoutedResult:
        """Route ``prompt`` and run it on one of the session's allocations (leasing one when
        needed), failing over and escalating as the orchestrator does.

        ``target`` pins the call to a target, ``tier`` narrows it to a tier. Raises
        ``BudgetExceededError`` before sending anything once the budget is spent, and
        ``AllAttemptsFailedError`` (carrying every attempt) when no attempt succeeded.
        """
        self._check()
        request = routed_request(
            self._engine, self._names, "prompt", prompt, max_tokens, temperature, stop, target, tier
        )
        return await self._engine.infer(
            self._slots, self._policy, request, temperature, stop, self._names, self._scopes
        )

    def stream(
        self,
        prompt: str,
        *,
        max_tokens: int = 256,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
        target: Target | str | None = None,
        tier: Tier | str | None = None,
    ) -> RoutedStream:
        """A routed, streamed inference: ``async with session.stream(...) as chunks``.

        It fails over only before its first chunk; a stream is never escalated.
        """
        request = routed_request(
            self._engine, self._names, "prompt", prompt, max_tokens, temperature, stop, target, tier
        )
        return RoutedStream(
            self._engine,
            self._slots,
            self._policy,
            request,
            inference_options(temperature, stop),
            self._names,
            self._scopes,
            self._check,
        )
