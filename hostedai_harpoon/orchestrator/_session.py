"""``Session``: a scope of GPU use, ``async with orchestrator.allocate(...) as session``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NoReturn

from .. import (
    AllocationError,
    BudgetExceededError,
    ConfigurationError,
    HostedAIError,
    OrchestratorClosedError,
    UsageError,
)
from ..routing import RoutingPolicy, Target, Tier
from ._checks import routed_request
from ._engine import Engine, Routed
from ._inflight import InFlight, guarded, settle
from ._results import RoutedResult
from ._slots import Slots
from ._stream import RoutedStream

log = logging.getLogger("hostedai_harpoon")

__all__ = ["Session", "inference_options"]

# How long leaving a session waits for the calls it cut off to let go of their leases.
_CUT_OFF_GRACE = 30.0


def inference_options(temperature: float | None, stop: str | list[str] | None) -> dict[str, Any]:
    """The options passed on to ``lease.infer`` / ``lease.stream`` besides the prompt."""
    return {"temperature": temperature, "stop": stop}


def check_deadline(deadline: object) -> float | None:
    """A call's ``deadline=``: seconds > 0, or None."""
    if deadline is None:
        return None
    if (
        isinstance(deadline, bool)
        or not isinstance(deadline, int | float)
        or not 0 < deadline < float("inf")
    ):
        raise ConfigurationError(f"deadline must be a number of seconds > 0, got {deadline!r}")
    return float(deadline)


class Session:
    """A scope of GPU use: calls routed per request on allocations leased for the scope.

    Made by ``Orchestrator.allocate(...)``; use it as ``async with ... as session``.
    Each call routes over the live state, then runs on an allocation the session already
    holds for the chosen target or on one it leases then; one allocation takes up to the
    target's ``max_concurrency`` calls at once, and at ``max_allocations`` further callers
    wait their turn. Leaving the block cancels the calls still in flight (they raise
    ``OrchestratorClosedError``) and releases every allocation the session leased, however
    the block is left. Safe to use from many tasks at once.

    With a ``budget``, a call is admitted, and an allocation leased, only while what is
    spent plus what is already committed (the busy allocations' calls, the leases being
    made, every release) fits; once no further call would fit, idle allocations are
    released at once (docs/orchestrator.md gives the worst-case overshoot).
    ``prewarm_errors`` names each prewarm target that could not be leased, and why.
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
        deadline: float | None = None,
        require_prewarm: bool = False,
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
        self._deadline = deadline
        self._require_prewarm = require_prewarm
        self._entered = False
        self._closed = False
        self.prewarm_errors: Mapping[str, HostedAIError] = {}
        """Each prewarm target that could not be leased on entering, with the error."""

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<Session {state} calls_in_flight={len(self._calls)} spent=${self.spent:.6f}>"

    @property
    def spent(self) -> float:
        """Estimated dollars spent: the GPU-seconds the session held, at each target's price."""
        return self._slots.spent()

    @property
    def idle_cost(self) -> float:
        """Of ``spent``, the dollars of allocation time with no call on it (being made,
        kept warm, being released): the calls' ``cost`` plus this adds up to ``spent``."""
        return self._slots.idle_cost()

    @property
    def budget(self) -> float | None:
        """The most the session may spend, in dollars (``None``: no cap)."""
        return self._budget

    def __enter__(self) -> NoReturn:
        raise UsageError("a session is async: `async with orchestrator.allocate(...) as session:`")

    def __exit__(self, *_: object) -> None:
        """Never reached: entering with ``with`` is refused."""

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
        """Lease one allocation of each prewarm target. What could not be leased is in
        ``prewarm_errors`` (logged), or, with ``require_prewarm``, an ``AllocationError``
        naming each target and why."""
        leasing = [asyncio.ensure_future(self._slots.open(t)) for t in self._prewarm]
        try:
            outcomes = await asyncio.gather(*leasing, return_exceptions=True)
        except BaseException:
            for task in leasing:
                task.cancel()
            await settle(leasing)
            raise
        errors: dict[str, HostedAIError] = {}
        for target, outcome in zip(self._prewarm, outcomes, strict=True):
            if isinstance(outcome, HostedAIError):
                errors[target.name] = outcome
            elif isinstance(outcome, BaseException):
                raise outcome
        self.prewarm_errors = errors
        if not errors:
            return
        detail = "; ".join(f"{name}: {type(e).__name__}: {e}" for name, e in errors.items())
        if self._require_prewarm:
            raise AllocationError(
                f"could not prewarm {detail} (a full pool: raise capacity_timeout= on the "
                "Orchestrator to wait for room; or pass require_prewarm=False to open the "
                "session without them)"
            )
        log.warning("could not prewarm %s; the session opens without them", detail)

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Cancel the calls in flight and release every allocation. Idempotent; ``close()``
        is the same."""
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

    close = aclose

    def _check(self) -> None:
        if self._closed:
            raise OrchestratorClosedError("the session is closed")
        if not self._entered:
            raise UsageError("use `async with orchestrator.allocate(...) as session:` to open it")
        self._check_open()
        if self._budget is not None:
            committed = self._slots.committed()
            if committed >= self._budget:
                self._slots.mind_budget()  # reached: let go of what is idle
                spent = self._slots.spent()
                raise BudgetExceededError(
                    f"the session's budget of ${self._budget:.7g} is spent or committed "
                    f"(${spent:.7g} spent, ${committed:.7g} with what is bound to be); "
                    "the call was not sent",
                    budget=self._budget,
                    spent=spent,
                )

    async def infer(
        self,
        prompt: str,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
        target: Target | str | None = None,
        tier: Tier | str | None = None,
        deadline: float | None = None,
    ) -> RoutedResult:
        """Route ``prompt`` and run it on one of the session's allocations (leasing one when
        needed), failing over and escalating as the orchestrator does.

        ``target`` pins the call to a target, ``tier`` narrows it to a tier; ``deadline``
        (seconds; default: the orchestrator's) bounds the whole call, every target and
        lease included, and raises ``APITimeoutError`` when it passes. Raises
        ``BudgetExceededError`` before sending anything once the budget is spent, and
        ``AllAttemptsFailedError`` (carrying every attempt) when no attempt succeeded.
        """
        self._check()
        return await self._engine.infer(
            self._routed(prompt, max_tokens, temperature, stop, target, tier, deadline)
        )

    def _routed(
        self,
        prompt: str,
        max_tokens: int | None,
        temperature: float | None,
        stop: str | list[str] | None,
        target: Target | str | None,
        tier: Tier | str | None,
        deadline: float | None,
    ) -> Routed:
        request = routed_request(
            self._engine, self._names, "prompt", prompt, max_tokens, temperature, stop, target, tier
        )
        return Routed(
            self._slots,
            self._policy,
            request,
            inference_options(temperature, stop),
            self._names,
            self._scopes,
            self._deadline if deadline is None else check_deadline(deadline),
        )

    def stream(
        self,
        prompt: str,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
        target: Target | str | None = None,
        tier: Tier | str | None = None,
        deadline: float | None = None,
    ) -> RoutedStream:
        """A routed, streamed inference: ``async with session.stream(...) as chunks``.

        It fails over only before its first chunk; a stream is never escalated.
        ``deadline`` bounds the time to the first chunk. Entering checks the budget
        exactly as ``infer`` does, before anything is sent.
        """
        call = self._routed(prompt, max_tokens, temperature, stop, target, tier, deadline)
        return RoutedStream(self._engine, call, self._check)
