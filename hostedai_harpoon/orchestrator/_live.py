"""The live state of every target: what routing sees, snapshots count and health judges.

``LiveState`` is the one interface the rest of the orchestrator uses; ``LocalLiveState``
keeps it in this process, and ``_shared.SharedLiveState`` extends it with what the other
replicas of a fleet report through Redis.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Sequence
from typing import Literal, Protocol

from .. import CircuitBreaker, CircuitBreakerConfig, CircuitState, Pool, Usage
from ..routing import Target, TargetState
from ._results import Snapshot, TargetHealth, TargetStats, judged, percentile, totalled

__all__ = ["LiveState", "LocalLiveState", "Outcome"]

Outcome = Literal["ok", "failed", "busy", "refused"]
"""How a call ended for its target: answered, failed for the target's sake (counts against
it), busy (no room there now: says nothing about its health), or refused for the request's
sake (says nothing about the target)."""

_LATENCY_WINDOW = 128
_EWMA_WEIGHT = 0.2
# Routing sees latencies refreshed every this many completed calls: a decision needs the
# trend, not the last microsecond, and unchanged states are reused instead of rebuilt.
_PUBLISH_EVERY = 16
_CLOSED = CircuitState.CLOSED


class LiveState(Protocol):
    """What the orchestrator records about its targets and reads back to route."""

    def states(self) -> Sequence[TargetState]:
        """The current ``TargetState`` of every target, for ``route()``."""
        ...

    def begin(self, name: str) -> bool:
        """Ask the target's breaker for one attempt and count the call as begun: the
        breaker's ticket, or ``CircuitOpenError`` (then nothing is counted)."""
        ...

    def finished(
        self, name: str, ticket: bool, outcome: Outcome, seconds: float, usage: Usage | None
    ) -> None:
        """A call that ``begin`` let through ended, with the ticket it gave."""
        ...

    def abandoned(self, name: str, ticket: bool) -> None:
        """A call that ``begin`` let through was cancelled: nothing is learnt about the target."""
        ...

    def failed_over(self, name: str) -> None:
        """A call moved away from the target after it failed."""
        ...

    def held(self, name: str, key: str, holding: bool) -> None:
        """An allocation ``key`` of the target became ready (``True``) or was let go."""
        ...

    def idled(self, name: str, dollars: float) -> None:
        """An allocation of the target was released after ``dollars`` of idle time."""
        ...

    def pools_due(self) -> bool:
        """Whether the pools' free GPUs should be read again."""
        ...

    def pool_free(self, target: Target) -> int | None:
        """The free GPUs of the target's pool at the last read (None: not known)."""
        ...

    def pools_unknown(self) -> bool:
        """Whether the pools were never read, or turned out full since the last read."""
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
        self.unpublished = 0
        self.published: tuple[float | None, float | None, float | None] = (None, None, None)
        self.state: TargetState = TargetState(target)
        # Whether ``state`` may be out of date in more than its in-flight count and its
        # circuit (those two are compared on every read; the rest is marked when it moves).
        self.stale = True
        # Whether the breaker may have left the state last read from it. Only a recorded
        # outcome moves a closed breaker, and only while failures are in its window.
        self.recheck = False
        self.failed_at: float | None = None
        # How long a recorded failure may weigh in the breaker's window (its buckets).
        self.failure_weighs = 2 * breaker.config.window + 1.0
        self.outcomes: deque[tuple[float, bool]] = deque()
        self.errors_in_window = 0
        self.held_since: dict[str, float] = {}
        self.released_seconds = 0.0
        self.idle_cost = 0.0

    def percentile(self, share: float) -> float | None:
        ordered = self.sorted_latencies
        if ordered is None:
            ordered = self.sorted_latencies = sorted(self.latencies)
        return percentile(ordered, share)

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
        self._all = tuple(self._targets.values())
        self._states = tuple([live.state for live in self._all])
        self._free: dict[str | None, int] = {}
        self._pools_read_at: float | None = None

    # Calls

    def begin(self, name: str) -> bool:
        live = self._targets[name]
        if live.recheck or live.state.circuit is not _CLOSED:
            ticket = live.breaker.acquire()
        else:
            ticket = False  # what a closed breaker answers
        live.in_flight += 1
        live.requests += 1
        return ticket

    def finished(
        self, name: str, ticket: bool, outcome: Outcome, seconds: float, usage: Usage | None
    ) -> None:
        live = self._targets[name]
        live.in_flight -= 1
        if outcome == "refused" or outcome == "busy":
            live.errors += 1
            live.breaker.abandon(ticket)
            return
        ok = outcome == "ok"
        live.breaker.record(ticket, ok)
        now = self._clock()
        if not ok:
            live.failed_at = now
        if live.failed_at is not None and now - live.failed_at < live.failure_weighs:
            live.recheck = True
        outcomes = live.outcomes
        outcomes.append((now, ok))
        if outcomes[0][0] < now - self._window:
            self._expire(live, now)
        if not ok:
            live.errors += 1
            live.errors_in_window += 1
            live.stale = True
            return
        if live.errors_in_window:
            live.stale = True  # the error rate moved
        live.latencies.append(seconds)
        live.sorted_latencies = None
        ewma = live.ewma
        live.ewma = seconds if ewma is None else ewma + _EWMA_WEIGHT * (seconds - ewma)
        live.unpublished += 1
        if live.unpublished >= _PUBLISH_EVERY or live.published[0] is None:
            live.unpublished = 0
            live.published = (live.ewma, live.percentile(0.5), live.percentile(0.95))
            live.stale = True
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
            live.stale = True
            if not outcomes.popleft()[1]:
                live.errors_in_window -= 1

    # Allocations and pools

    def held(self, name: str, key: str, holding: bool) -> None:
        live = self._targets[name]
        live.stale = True
        now = self._clock()
        if holding:
            live.held_since[key] = now
            return
        since = live.held_since.pop(key, None)
        if since is not None:
            live.released_seconds += now - since

    def idled(self, name: str, dollars: float) -> None:
        self._targets[name].idle_cost += dollars

    def pools_due(self) -> bool:
        read_at = self._pools_read_at
        return read_at is None or self._clock() - read_at >= self._refresh

    def pools_unknown(self) -> bool:
        return self._pools_read_at is None

    def pools_seen(self, pools: Iterable[Pool] | None) -> None:
        self._pools_read_at = self._clock()
        if pools is None:
            return
        self._free = {}
        for pool in pools:
            self._free[pool.id] = pool.gpus_free
            if pool.default:
                self._free[None] = pool.gpus_free
        for live in self._all:
            live.stale = True

    def pools_stale(self) -> None:
        self._pools_read_at = None

    def pool_free(self, target: Target) -> int | None:
        return self._pool_free(target)

    def _pool_free(self, target: Target) -> int | None:
        if target.endpoint is not None:
            return None  # a server that runs: no pool to find room in
        pool = target.pool if target.pool is not None else self._pool_id
        return self._free.get(pool)

    # Reading

    def states(self) -> tuple[TargetState, ...]:
        # Read before every routed call: a state is rebuilt only when it moved.
        now = self._clock()
        horizon = now - self._window
        moved = False
        for live in self._all:
            outcomes = live.outcomes
            if outcomes and outcomes[0][0] < horizon:
                self._expire(live, now)
            state = live.state
            circuit = state.circuit
            if live.recheck or circuit is not _CLOSED:  # a cool-down may have ended, too
                live.recheck = False
                circuit = live.breaker.state
            if live.stale or circuit is not state.circuit or live.in_flight != state.in_flight:
                live.state = self._state(live, circuit)
                moved = True
        if moved:
            self._states = tuple([live.state for live in self._all])
        return self._states

    def _state(self, live: _Target, circuit: CircuitState) -> TargetState:
        live.stale = False
        ewma, p50, p95 = live.published
        count = len(live.outcomes)
        return TargetState(
            live.target,
            circuit=circuit,
            in_flight=live.in_flight,
            warm_allocations=len(live.held_since),
            latency_ewma=ewma,
            latency_p50=p50,
            latency_p95=p95,
            error_rate=live.errors_in_window / count if count else 0.0,
            pool_free_gpus=self._pool_free(live.target),
        )

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
                idle_cost=live.idle_cost,
                latency_p50=live.percentile(0.5),
                latency_p95=live.percentile(0.95),
            )
            for name, live in self._targets.items()
        }
        every = sorted(x for live in self._targets.values() for x in live.latencies)
        total = totalled(per_target.values(), every)
        return Snapshot(per_target, total)

    def health(self) -> list[TargetHealth]:
        return [judged(state) for state in self.states()]
