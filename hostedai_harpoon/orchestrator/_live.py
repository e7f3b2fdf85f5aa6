"""The live state of every target: what routing sees, snapshots count and health judges.

``LiveState`` is the one interface the rest of the orchestrator uses; ``LocalLiveState``
keeps it in this process. A store shared by several replicas plugs in here by
implementing the same few methods.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, Protocol

from .. import CircuitBreaker, CircuitBreakerConfig, CircuitState, Pool, Usage
from ..routing import Target, TargetState
from ._results import Snapshot, TargetHealth, TargetStats, Verdict

__all__ = ["LiveState", "LocalLiveState", "Outcome"]

Outcome = Literal["ok", "failed", "refused"]
"""How a call ended for its target: answered, failed for the target's sake (counts against
it), or refused for the request's sake (says nothing about the target)."""

_LATENCY_WINDOW = 128
_EWMA_WEIGHT = 0.2
_DEGRADED_ERROR_RATE = 0.1


class LiveState(Protocol):
    """What the orchestrator records about its targets and reads back to route."""

    def states(self) -> Sequence[TargetState]:
        """A fresh ``TargetState`` per target, for ``route()``."""
        ...

    def admit(self, name: str) -> bool:
        """Ask the target's breaker for one attempt: a ticket, or ``CircuitOpenError``."""
        ...

    def started(self, name: str) -> None:
        """A call began on the target."""
        ...

    def finished(
        self, name: str, ticket: bool, outcome: Outcome, seconds: float, usage: Usage | None
    ) -> None:
        """A call that ``started`` ended, with the ticket ``admit`` gave it."""
        ...

    def abandoned(self, name: str, ticket: bool) -> None:
        """A call that ``started`` was cancelled: nothing is learnt about the target."""
        ...

    def failed_over(self, name: str) -> None:
        """A call moved away from the target after it failed."""
        ...

    def held(self, name: str, key: str, holding: bool) -> None:
        """An allocation ``key`` of the target became ready (``True``) or was let go."""
        ...

    def pools_due(self) -> bool:
        """Whether the pools' free GPUs should be read again."""
        ...

    def pools_seen(self, pools: Iterable[Pool] | None) -> None:
        """The pools just read (``None``: reading failed; try again later)."""
        ...

    def pools_stale(self) -> None:
        """Read the pools again before the next route (a pool just turned out full)."""
        ...

    def snapshot(self) -> Snapshot:
        """Every counter, per target and in total."""
        ...

    def health(self) -> list[TargetHealth]:
        """Each target's health, in the targets' order."""
        ...


class _Target:
    """One target's counters, breaker and recent history."""

    def __init__(self, target: Target, breaker: CircuitBreaker) -> None:
        self.target = target
        self.breaker = breaker
        self.in_flight = 0
        self.requests = 0
        self.errors = 0
        self.failovers = 0
        self.tokens_in = 0
        self.tokens_out = 0
        self.latencies: deque[float] = deque(maxlen=_LATENCY_WINDOW)
        self.sorted_latencies: list[float] | None = []
        self.ewma: float | None = None
        self.outcomes: deque[tuple[float, bool]] = deque()
        self.errors_in_window = 0
        self.held_since: dict[str, float] = {}
        self.released_seconds = 0.0

    def percentile(self, share: float) -> float | None:
        ordered = self.sorted_latencies
        if ordered is None:
            ordered = self.sorted_latencies = sorted(self.latencies)
        if not ordered:
            return None
        return ordered[min(len(ordered) - 1, int(share * len(ordered)))]

    def gpu_seconds(self, now: float) -> float:
        held = sum(now - since for since in self.held_since.values())
        return (self.released_seconds + held) * self.target.gpus


class LocalLiveState:
    """``LiveState`` for one process: plain counters, read and written on the event loop.

    ``clock`` times breaker cool-downs, the error-rate ``window`` and the pools'
    ``refresh`` interval; ``pool_id`` is the pool a target without one uses (``None``:
    the server's default pool).
    """

    def __init__(
        self,
        targets: Sequence[Target],
        *,
        breaker: CircuitBreakerConfig,
        clock: Callable[[], float],
        window: float,
        refresh: float,
        pool_id: str | None,
    ) -> None:
        self._clock = clock
        self._window = window
        self._refresh = refresh
        self._pool_id = pool_id
        self._targets = {
            target.name: _Target(target, CircuitBreaker(breaker, clock=clock, name=target.name))
            for target in targets
        }
        self._free: dict[str | None, int] = {}
        self._pools_read_at: float | None = None

    # Calls

    def admit(self, name: str) -> bool:
        return self._targets[name].breaker.acquire()

    def started(self, name: str) -> None:
        live = self._targets[name]
        live.in_flight += 1
        live.requests += 1

    def finished(
        self, name: str, ticket: bool, outcome: Outcome, seconds: float, usage: Usage | None
    ) -> None:
        live = self._targets[name]
        live.in_flight -= 1
        if outcome == "refused":
            live.errors += 1
            live.breaker.abandon(ticket)
            return
        ok = outcome == "ok"
        live.breaker.record(ticket, ok)
        now = self._clock()
        live.outcomes.append((now, ok))
        self._expire(live, now)
        if not ok:
            live.errors += 1
            live.errors_in_window += 1
            return
        live.latencies.append(seconds)
        live.sorted_latencies = None
        live.ewma = (
            seconds if live.ewma is None else live.ewma + _EWMA_WEIGHT * (seconds - live.ewma)
        )
        if usage is not None:
            live.tokens_in += usage.input_tokens
            live.tokens_out += usage.output_tokens

    def abandoned(self, name: str, ticket: bool) -> None:
        live = self._targets[name]
        live.in_flight -= 1
        live.breaker.abandon(ticket)

    def failed_over(self, name: str) -> None:
        self._targets[name].failovers += 1

    def _expire(self, live: _Target, now: float) -> None:
        horizon = now - self._window
        outcomes = live.outcomes
        while outcomes and outcomes[0][0] < horizon:
            if not outcomes.popleft()[1]:
                live.errors_in_window -= 1

    def _error_rate(self, live: _Target) -> float:
        self._expire(live, self._clock())
        count = len(live.outcomes)
        return live.errors_in_window / count if count else 0.0

    # Allocations and pools

    def held(self, name: str, key: str, holding: bool) -> None:
        live = self._targets[name]
        now = self._clock()
        if holding:
            live.held_since[key] = now
            return
        since = live.held_since.pop(key, None)
        if since is not None:
            live.released_seconds += now - since

    def pools_due(self) -> bool:
        read_at = self._pools_read_at
        return read_at is None or self._clock() - read_at >= self._refresh

    def pools_seen(self, pools: Iterable[Pool] | None) -> None:
        self._pools_read_at = self._clock()
        if pools is None:
            return
        self._free = {}
        for pool in pools:
            self._free[pool.id] = pool.gpus_free
            if pool.default:
                self._free[None] = pool.gpus_free

    def pools_stale(self) -> None:
        self._pools_read_at = None

    def _pool_free(self, target: Target) -> int | None:
        pool = target.pool if target.pool is not None else self._pool_id
        return self._free.get(pool)

    # Reading

    def states(self) -> list[TargetState]:
        return [
            TargetState(
                live.target,
                circuit=live.breaker.state,
                in_flight=live.in_flight,
                warm_allocations=len(live.held_since),
                latency_ewma=live.ewma,
                latency_p50=live.percentile(0.5),
                latency_p95=live.percentile(0.95),
                error_rate=self._error_rate(live),
                pool_free_gpus=self._pool_free(live.target),
            )
            for live in self._targets.values()
        ]

    def snapshot(self) -> Snapshot:
        now = self._clock()
        per_target = {
            name: TargetStats(
                requests=live.requests,
                errors=live.errors,
                failovers=live.failovers,
                in_flight=live.in_flight,
                warm_allocations=len(live.held_since),
                tokens_in=live.tokens_in,
                tokens_out=live.tokens_out,
                gpu_seconds=live.gpu_seconds(now),
                cost=live.gpu_seconds(now) * live.target.cost_per_gpu_hour / 3600.0,
                latency_p50=live.percentile(0.5),
                latency_p95=live.percentile(0.95),
            )
            for name, live in self._targets.items()
        }
        every: list[float] = sorted(x for live in self._targets.values() for x in live.latencies)
        stats = per_target.values()
        total = TargetStats(
            requests=sum(s.requests for s in stats),
            errors=sum(s.errors for s in stats),
            failovers=sum(s.failovers for s in stats),
            in_flight=sum(s.in_flight for s in stats),
            warm_allocations=sum(s.warm_allocations for s in stats),
            tokens_in=sum(s.tokens_in for s in stats),
            tokens_out=sum(s.tokens_out for s in stats),
            gpu_seconds=sum(s.gpu_seconds for s in stats),
            cost=sum(s.cost for s in stats),
            latency_p50=every[int(0.5 * len(every))] if every else None,
            latency_p95=every[min(len(every) - 1, int(0.95 * len(every)))] if every else None,
        )
        return Snapshot(per_target, total)

    def health(self) -> list[TargetHealth]:
        return [_judged(state) for state in self.states()]


def _judged(state: TargetState) -> TargetHealth:
    target = state.target
    free = state.pool_free_gpus
    verdict: Verdict = "ok"
    if state.circuit is CircuitState.OPEN or (
        free is not None and free < target.gpus and state.warm_allocations == 0
    ):
        verdict = "down"
    elif state.circuit is CircuitState.HALF_OPEN or state.error_rate > _DEGRADED_ERROR_RATE:
        verdict = "degraded"
    return TargetHealth(
        target=target,
        verdict=verdict,
        circuit=state.circuit,
        error_rate=state.error_rate,
        in_flight=state.in_flight,
        warm_allocations=state.warm_allocations,
        pool_free_gpus=free,
        latency_p50=state.latency_p50,
        latency_p95=state.latency_p95,
    )
