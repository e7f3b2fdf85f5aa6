"""What the whole Orchestrator shares between its scopes, per target: the allocation count
against ``max_allocations``, and the back-off after a lease was refused.

Every scope (the warm pool and each session) leases through its ``Slots``; they all count
here, so ``Orchestrator(max_allocations=...)`` holds for the orchestrator as a whole. An
allocation counts from the moment its lease starts until its release ended (confirmed, or
handed to the orphan ledger), so a replacement is never leased while the release of the
one it replaces is still in flight.

After a lease fails (a full pool, above all), the target backs off: no scope leases it
again before the server's ``Retry-After`` or the back-off (0.25 s doubling to 5 s, each
wait drawn between half and all of it) has passed, and then only one lease at a time
(a probe) until one succeeds. While a pool stays full that is at most one allocate
request per target per wait: 4 per second at first, then one every 2.5 to 5 seconds,
plus one probe each time an allocation of that target is released (which made room).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable, Mapping
from typing import Protocol

from .. import APIStatusError, AsyncLease
from ._group import Limits, Slot

__all__ = ["Fleet"]

_FIRST_BACKOFF = 0.25
_MAX_BACKOFF = 5.0


class Scope(Protocol):
    """A user of the fleet's counts: woken when a target may be leased again."""

    def pump(self, name: str) -> None: ...


class _Count:
    __slots__ = ("failures", "leasing", "limit", "live", "retry_at", "timer")

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.live = 0  # allocations counted: leasing, held or releasing, in every scope
        self.leasing = 0
        self.failures = 0  # leases refused in a row
        self.retry_at = 0.0
        self.timer: asyncio.Task[None] | None = None


class Fleet:
    """Per target name: the orchestrator-wide count and the back-off (see the module)."""

    def __init__(
        self,
        limits: Limits,
        *,
        clock: Callable[[], float],
        sleep: Callable[[float], Awaitable[None]],
        rng: random.Random | None = None,
    ) -> None:
        self._limits = limits
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()
        self._counts: dict[str, _Count] = {}
        self._scopes: list[Scope] = []
        self.endpoints: dict[str, Slot] = {}
        """The shared slot of each endpoint target, by name."""

    def _count(self, name: str) -> _Count:
        count = self._counts.get(name)
        if count is None:
            limits = self._limits
            limit = limits.get(name) if isinstance(limits, Mapping) else limits
            count = self._counts[name] = _Count(limit)
        return count

    def join(self, scope: Scope) -> None:
        self._scopes.append(scope)

    def leave(self, scope: Scope) -> None:
        if scope in self._scopes:
            self._scopes.remove(scope)

    def live(self, name: str) -> int:
        """Allocations of ``name`` counted in every scope."""
        return self._count(name).live

    def blocked(self, name: str) -> str | None:
        """Why no lease of ``name`` may start now: ``"cap"`` (the orchestrator-wide limit is
        reached), ``"backoff"`` (a lease was refused: wait, then one probe), or None."""
        count = self._count(name)
        if count.limit is not None and self._at_cap(name, count):
            return "cap"
        if count.failures and (count.leasing or self._clock() < count.retry_at):
            return "backoff"
        return None

    def _at_cap(self, name: str, count: _Count) -> bool:
        """Whether ``name`` (which has a limit) may not have one more allocation now. A
        fleet of replicas decides this in Redis (``_shared.SharedFleet``)."""
        return count.live >= (count.limit or 0)

    def leasing(self, name: str) -> int:
        """Leases of ``name`` under way in every scope."""
        return self._count(name).leasing

    def backing_off(self, name: str) -> bool:
        """Whether leases of ``name`` were refused lately (none succeeded since)."""
        return self._count(name).failures > 0

    def retry_in(self, name: str) -> float:
        """Seconds until ``name`` may be leased again after a refusal (0: now)."""
        return max(0.0, self._count(name).retry_at - self._clock())

    def started(self, name: str) -> None:
        count = self._count(name)
        count.live += 1
        count.leasing += 1

    def creating(self, name: str, lease: AsyncLease) -> Awaitable[None] | None:
        """A lease of ``name`` is about to send its create: what to await first (a fleet
        registers the lease's idempotency key in Redis; here, nothing)."""
        return None

    def created(self, name: str, lease: AsyncLease) -> None:
        """That lease's create is settled: it made an allocation (registered by its id
        from now on), or it failed and its clean-up is over."""

    def succeeded(self, name: str) -> None:
        count = self._count(name)
        count.leasing -= 1
        count.failures = 0
        count.retry_at = 0.0

    def failed(self, name: str, error: BaseException | None) -> None:
        """A lease of ``name`` ended without an allocation (nothing is held for it)."""
        count = self._count(name)
        count.live -= 1
        if error is None:  # cancelled: nothing learnt about the target
            count.leasing -= 1
            self._wake(name)
            return
        self.refused(name, error)

    def cleaned(self, name: str) -> None:
        """A refused lease's clean-up is over: what it made no longer counts."""
        self._count(name).live -= 1
        self._wake(name)

    def refused(self, name: str, error: BaseException) -> None:
        """A lease of ``name`` failed (its clean-up may still run: it stays counted until
        ``cleaned``): back off."""
        count = self._count(name)
        count.leasing -= 1
        base = min(_MAX_BACKOFF, _FIRST_BACKOFF * 2.0**count.failures)
        wait = base * self._rng.uniform(0.5, 1.0)
        cause: BaseException | None = error
        while cause is not None:  # the server's Retry-After, wherever it is in the chain
            if isinstance(cause, APIStatusError) and cause.retry_after is not None:
                wait = max(wait, cause.retry_after)
                break
            cause = cause.__cause__
        count.failures += 1
        count.retry_at = max(count.retry_at, self._clock() + wait)
        if count.timer is not None:  # one timer per target, for the latest retry time
            count.timer.cancel()
        wait = count.retry_at - self._clock()
        count.timer = asyncio.get_running_loop().create_task(self._wake_later(name, wait))

    def released(self, name: str) -> None:
        """An allocation of ``name`` is no longer live (its release ended). That made room
        in its pool: a refused target may try one lease again at once."""
        count = self._count(name)
        count.live -= 1
        count.retry_at = 0.0
        self._wake(name)

    async def _wake_later(self, name: str, wait: float) -> None:
        await self._sleep(wait)
        count = self._count(name)
        count.timer = None
        count.retry_at = 0.0  # the latest refusal's wait is over (a later one replaces us)
        self._wake(name)

    def wake(self, name: str) -> None:
        """Room may have come up on ``name`` (an endpoint's place was given back)."""
        self._wake(name)

    def _wake(self, name: str) -> None:
        for scope in list(self._scopes):
            scope.pump(name)

    def stop(self) -> None:
        """Cancel the back-off timers (the orchestrator is closing)."""
        for count in self._counts.values():
            if count.timer is not None:
                count.timer.cancel()
