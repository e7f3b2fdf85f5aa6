"""``RoutedStream``: a routed, streamed inference, failed over before its first chunk."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from types import TracebackType

import attrs

from .. import HostedAIError, InferenceChunk, Usage, UsageError
from ..routing import RouteDecision
from ._engine import Engine, OpenedStream, Routed
from ._failover import judge
from ._inflight import Tracking
from ._results import Attempt

__all__ = ["RoutedStream"]


class RoutedStream:
    """The chunks of a routed, streamed inference: ``async with session.stream(...) as chunks``.

    Made by ``Session.stream(...)``.

    Entering routes the request and opens the stream, failing over to the decision's
    fallbacks until a first chunk arrives; after that an error ends the stream. While the
    block runs, ``decision`` says where it went and why and ``attempts`` lists every try.
    Leaving the block closes the stream, however it is left.
    """

    def __init__(self, engine: Engine, call: Routed, check: Callable[[], None]) -> None:
        self._engine = engine
        self._call = call
        self._slots = call.slots
        self._scopes = call.scopes
        self._check = check
        self._tracking: Tracking | None = None
        self._opened: OpenedStream | None = None
        self._decision: RouteDecision | None = None
        self._usage: Usage | None = None
        self.attempts: list[Attempt] = []
        """Every try so far, in order."""

    @property
    def decision(self) -> RouteDecision:
        """Where the stream went and why (once entered)."""
        if self._decision is None:
            raise UsageError("the stream was not opened: use `async with session.stream(...)`")
        return self._decision

    async def __aenter__(self) -> RoutedStream:
        if self._tracking is not None:
            raise HostedAIError("a routed stream can be entered only once")
        self._check()
        tracking = self._tracking = Tracking(self._scopes)
        try:
            self._decision, self._opened = await self._engine.stream(self._call, self.attempts)
        except BaseException as exc:
            tracking.end(exc)
            raise
        return self

    async def __aiter__(self) -> AsyncIterator[InferenceChunk]:
        opened = self._opened
        if opened is None:
            raise UsageError("the stream was not opened: use `async with session.stream(...)`")
        chunk = opened.first
        while True:
            if chunk.usage is not None:
                self._usage = chunk.usage
            yield chunk
            try:
                chunk = await anext(opened.rest)
            except StopAsyncIteration:
                return

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        opened, self._opened = self._opened, None
        if opened is None:
            return
        live, name = self._engine.live, opened.slot.target.name
        broken = False
        try:
            await opened.close()
        finally:
            seconds = time.perf_counter() - opened.started
            if exc is None:
                live.finished(name, opened.ticket, "ok", seconds, self._usage)
                # The answering attempt's wall time runs to the stream's end, not its opening.
                self.attempts[-1] = attrs.evolve(self.attempts[-1], seconds=seconds)
            elif isinstance(exc, HostedAIError):
                verdict = judge(exc)
                broken = verdict == "failed"
                live.finished(name, opened.ticket, verdict, 0.0, None)
            else:
                live.abandoned(name, opened.ticket)
            cost = self._slots.release(
                opened.slot, opened.share, broken=broken, seconds=None if exc else seconds
            )
            if self.attempts:  # the stream's own attempt, now that its time and cost are known
                last = self.attempts[-1]
                self.attempts[-1] = attrs.evolve(last, seconds=seconds, cost=cost)
            assert self._tracking is not None
            self._tracking.end(exc)
