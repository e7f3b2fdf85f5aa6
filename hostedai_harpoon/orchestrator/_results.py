"""What the Orchestrator hands back: routed results, their attempts, snapshots, health."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Literal

import attrs

from .. import CircuitState, Health, HostedAIError, InferenceResult
from ..routing import RouteDecision, Target, TargetState

__all__ = [
    "Attempt",
    "HealthReport",
    "RoutedResult",
    "Snapshot",
    "TargetHealth",
    "TargetStats",
    "Verdict",
    "judged",
    "overall",
    "percentile",
    "totalled",
    "with_costs",
]

Verdict = Literal["ok", "degraded", "down"]


@attrs.frozen
class Attempt:
    """One try of a routed call on one target.

    ``reason`` says why this target was tried (``"routed"``, ``"failover"`` or the cascade's
    escalation reason); ``allocation_id`` is the allocation the call ran on (``None`` when
    none was reached); ``error`` is what made the attempt fail, ``None`` when it answered;
    ``seconds`` is its wall time; ``cost`` its share, in dollars, of the allocation it ran
    on: each stretch of the allocation's time split evenly among the calls on it then (two
    calls at once each pay half), so that the calls' costs and the idle cost add up to
    what the allocation cost.
    """

    target: Target
    reason: str
    allocation_id: str | None
    error: HostedAIError | None
    seconds: float
    cost: float = 0.0


@attrs.frozen
class RoutedResult:
    """The answer of a routed call and how it was reached.

    ``decision`` is the route that produced ``result`` (after any failover or escalation),
    ``attempts`` every try in order, ``latency`` the call's wall time in seconds and
    ``cost`` its share of the allocations' cost in dollars (the attempts' ``cost``).
    """

    decision: RouteDecision
    result: InferenceResult
    attempts: tuple[Attempt, ...]
    latency: float

    @property
    def target(self) -> Target:
        """The target that answered."""
        return self.decision.target

    @property
    def cost(self) -> float:
        """The call's share of the cost of the allocations it ran on, in dollars."""
        return sum(attempt.cost for attempt in self.attempts)


@attrs.frozen
class TargetStats:
    """Counters for one target (or all of them) since the orchestrator started.

    ``gpu_seconds`` is GPU time held (allocations times GPUs times seconds, warm or in
    use) and ``cost`` its price in dollars; ``idle_cost`` is the part of what the
    allocations cost with no call on them (being made, kept warm, being released);
    latencies are of completed calls, in seconds, ``None`` until one completed.
    """

    requests: int = 0
    errors: int = 0
    failovers: int = 0
    in_flight: int = 0
    warm_allocations: int = 0
    tokens_in: int = 0
    tokens_out: int = 0
    gpu_seconds: float = 0.0
    cost: float = 0.0
    idle_cost: float = 0.0
    latency_p50: float | None = None
    latency_p95: float | None = None


_SUMMED = (
    "requests",
    "errors",
    "failovers",
    "in_flight",
    "warm_allocations",
    "tokens_in",
    "tokens_out",
    "gpu_seconds",
    "cost",
    "idle_cost",
)


def percentile(ordered: Sequence[float], share: float) -> float | None:
    """The value below which ``share`` of the sorted ``ordered`` lies; None when empty."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def totalled(stats: Iterable[TargetStats], latencies: Sequence[float]) -> TargetStats:
    """The sum of per-target ``stats``, with percentiles of all the (sorted) ``latencies``."""
    every = list(stats)
    sums = {name: sum(getattr(s, name) for s in every) for name in _SUMMED}
    return TargetStats(
        **sums, latency_p50=percentile(latencies, 0.5), latency_p95=percentile(latencies, 0.95)
    )


@attrs.frozen
class Snapshot:
    """The orchestrator's counters: per target name and in total. ``shared_state`` says
    where the orchestrator's state lives: ``"local"``, or with a ``RedisState`` whether
    Redis is reached (``"redis (...)"``) or this replica fell back to local state."""

    targets: Mapping[str, TargetStats]
    total: TargetStats
    shared_state: str = attrs.field(default="local", kw_only=True)


@attrs.frozen
class TargetHealth:
    """One target's live state and a verdict: ``"down"`` while its breaker is open or its
    pool has no room for it, ``"degraded"`` while it probes or fails often, else ``"ok"``."""

    target: Target
    verdict: Verdict
    circuit: CircuitState
    error_rate: float
    in_flight: int
    warm_allocations: int
    pool_free_gpus: int | None
    latency_p50: float | None
    latency_p95: float | None


@attrs.frozen
class HealthReport:
    """The API's health (``None`` with ``api_error`` when it could not be read), each
    target's health, and an overall verdict: ``"down"`` when the API is unreachable or no
    target is up, ``"ok"`` when the API and every target are, else ``"degraded"``.
    ``upkeep_error`` says why the background upkeep (idle release, ``min_warm``) died, if
    it did; the verdict is then ``"degraded"`` at best. ``shared_state`` is as in
    ``Snapshot``; a replica whose Redis is down is ``"degraded"`` at best too."""

    verdict: Verdict
    api: Health | None
    api_error: str | None
    targets: Mapping[str, TargetHealth]
    upkeep_error: str | None = attrs.field(default=None, kw_only=True)
    shared_state: str = attrs.field(default="local", kw_only=True)


# More than this share of recent calls failing makes a target degraded.
_DEGRADED_ERROR_RATE = 0.1


def judged(state: TargetState) -> TargetHealth:
    """A target's health, judged from its live state."""
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


def with_costs(
    snapshot: Snapshot, busy: Mapping[str, float], idle: Mapping[str, float]
) -> Snapshot:
    """``snapshot`` with what the live state cannot see added per target: the cost of the
    endpoint targets' busy time (``busy``) and the idle cost of the allocations held now
    (``idle``)."""
    if not busy and not idle:
        return snapshot
    targets = {
        name: attrs.evolve(
            stats,
            cost=stats.cost + busy.get(name, 0.0),
            idle_cost=stats.idle_cost + idle.get(name, 0.0),
        )
        for name, stats in snapshot.targets.items()
    }
    total = attrs.evolve(
        snapshot.total,
        cost=sum(t.cost for t in targets.values()),
        idle_cost=sum(t.idle_cost for t in targets.values()),
    )
    return attrs.evolve(snapshot, targets=targets, total=total)


def overall(
    reached: bool, api_ok: bool, targets: Mapping[str, TargetHealth], sound: bool
) -> Verdict:
    """The whole's verdict: ``"down"`` when the API could not be reached (``reached``) or no
    target is up, ``"ok"`` when the API (``api_ok``), every target and the orchestrator's
    own machinery (``sound``: its upkeep, its shared state) are, else ``"degraded"``."""
    verdicts = [health.verdict for health in targets.values()]
    if not reached or all(v == "down" for v in verdicts):
        return "down"
    if api_ok and sound and all(v == "ok" for v in verdicts):
        return "ok"
    return "degraded"
