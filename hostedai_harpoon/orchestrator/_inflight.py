"""The calls in flight in a scope, so that closing it can wait for them or cut them off.

A call cut off by a closing scope is cancelled like any asyncio task; the call then takes
that cancellation back (``Task.uncancel``, as ``asyncio.timeout`` does) and raises
``OrchestratorClosedError`` instead, unless its caller was cancelled too.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any, TypeVar

from .. import OrchestratorClosedError

__all__ = ["InFlight", "Tracking", "closed_instead", "current_task", "guarded", "settle"]

T = TypeVar("T")


class InFlight:
    """The tasks with a call in flight in one scope, and how many times each was cut off."""

    def __init__(self) -> None:
        self._calls: dict[asyncio.Task[object], int] = {}
        self._cuts: dict[asyncio.Task[object], int] = {}
        self._idle: asyncio.Event | None = None

    def __len__(self) -> int:
        return sum(self._calls.values())

    def enter(self, task: asyncio.Task[object]) -> None:
        """Count a call of ``task`` as in flight (until ``leave``)."""
        calls = self._calls
        calls[task] = calls.get(task, 0) + 1

    def leave(self, task: asyncio.Task[object]) -> None:
        """A call of ``task`` that ``enter`` counted has ended."""
        calls = self._calls
        left = calls[task] - 1
        if left:
            calls[task] = left
            return
        del calls[task]
        self._cuts.pop(task, None)  # a cut-off its call absorbed must not outlive the call
        if not calls and self._idle is not None:
            self._idle.set()

    def cut_off(self, except_task: asyncio.Task[object] | None = None) -> None:
        """Cancel every call in flight (but those of ``except_task``)."""
        for task in self._calls:
            if task is not except_task and not task.done():
                self._cuts[task] = self._cuts.get(task, 0) + 1
                task.cancel()

    def take_cuts(self, task: asyncio.Task[object]) -> int:
        """How many cancellations of ``task`` came from this scope (and forget them)."""
        return self._cuts.pop(task, 0)

    async def drained(self, within: float) -> bool:
        """Wait up to ``within`` seconds for every call to end; whether they did."""
        if not self._calls:
            return True
        self._idle = asyncio.Event()
        try:
            async with asyncio.timeout(within):
                await self._idle.wait()
        except TimeoutError:
            return False
        finally:
            self._idle = None
        return True


def closed_instead(task: asyncio.Task[object], *scopes: InFlight) -> OrchestratorClosedError | None:
    """For a call that got ``CancelledError``: the error to raise instead when only closing
    scopes cancelled it (their cancellations are taken back), else None."""
    cuts = sum(scope.take_cuts(task) for scope in scopes)
    if not cuts:
        return None
    remaining = task.cancelling()
    for _ in range(cuts):
        remaining = task.uncancel()
    if remaining:
        return None
    return OrchestratorClosedError("closed while the call was in flight; it was cancelled")


class Tracking:
    """One call of the current task in flight in every scope of ``scopes``, from now until
    ``end``: ``with Tracking(scopes): ...``, or ``end(exc)`` once a call spanning several
    awaits (a stream) is over. A cancellation that only closing scopes caused becomes
    ``OrchestratorClosedError``. (A plain class: no coroutine layer on every call.)"""

    __slots__ = ("_scopes", "_task")

    def __init__(self, scopes: Sequence[InFlight]) -> None:
        self._scopes = scopes
        task = self._task = current_task()
        for scope in scopes:
            scope.enter(task)

    def __enter__(self) -> Tracking:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.end(exc)

    def end(self, exc: BaseException | None) -> None:
        """The call is over, having raised ``exc`` (``None``: it did not)."""
        task, scopes = self._task, self._scopes
        closed = None
        if isinstance(exc, asyncio.CancelledError):
            closed = closed_instead(task, *scopes)  # (before leaving: leaving forgets cuts)
        for scope in scopes:
            scope.leave(task)
        if closed is not None:
            raise closed from None


async def guarded(call: Callable[[], Awaitable[T]], scopes: Sequence[InFlight]) -> T:
    """Run ``call`` as a call in flight in every scope of ``scopes`` (see ``Tracking``)."""
    with Tracking(scopes):
        return await call()


def current_task() -> asyncio.Task[object]:
    """The task running now (the orchestrator is only ever called from one)."""
    task = asyncio.current_task()
    if task is None:  # pragma: no cover - asyncio always runs coroutines in a task
        raise RuntimeError("the orchestrator must be called from an asyncio task")
    return task


async def settle(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Wait until every task is done, even when cancelled meanwhile; then deliver the
    cancellation."""
    cancelled = False
    while pending := [task for task in tasks if not task.done()]:
        try:
            await asyncio.wait(pending)
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        raise asyncio.CancelledError
