"""``LatencyPolicy``: power of two choices on expected latency times load.

Two candidates are drawn and the one with the lower load wins, where a target's load is
its latency estimate times the requests it would then have in flight, inflated by its
recent error rate (a failed call is paid for again)::

    load = latency * (in_flight + 1) / (1 - min(error_rate, 0.9))

The latency estimate is the moving average, else the recent median, else ``prior_latency``
for a target not observed yet. The draw is derived from ``seed`` and the request, not from
a random generator, so the same request over the same states gets the same decision while
different requests spread over the candidates. With two candidates both are compared.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ._base import RouteDecision, RouteRequest, TargetState, _seconds, _whole
from ._order import _request_hash

__all__ = ["LatencyPolicy"]


@attrs.frozen
class LatencyPolicy:
    """Picks the less loaded of two candidates drawn by ``seed`` and the request.

    ``seed`` is an integer; ``prior_latency`` (seconds, from 0 to a week) stands in for a
    target with no observed latency yet.
    ``scores`` holds the load of the two candidates compared; the other one is the first
    fallback and the remaining candidates follow in their given order.
    """

    seed: int = attrs.field(default=0, validator=_whole)
    prior_latency: float = attrs.field(default=0.5, validator=_seconds)

    def __call__(self, request: RouteRequest, candidates: Sequence[TargetState]) -> RouteDecision:
        """Choose between two of ``candidates`` by latency times in-flight requests."""
        count = len(candidates)
        if count == 1:
            only = candidates[0].target
            return RouteDecision(only, f"the only healthy target: {only.name}")
        if count == 2:
            first, second = candidates
            others: list[TargetState] = []
        else:
            draw = _request_hash(request, self.seed)
            i = draw % count
            j = (i + 1 + (draw // count) % (count - 1)) % count
            first, second = candidates[i], candidates[j]
            others = [state for state in candidates if state is not first and state is not second]
        prior = self.prior_latency
        first_load, second_load = _load(first, prior), _load(second, prior)
        if second_load < first_load or (
            second_load == first_load and second.target.name < first.target.name
        ):
            first, second, first_load, second_load = second, first, second_load, first_load
        winner, loser = first.target, second.target
        if first_load == second_load:
            reason = (
                f"power of two choices: {winner.name} and {loser.name} are equally loaded "
                f"(latency x requests in flight); {winner.name} comes first by name"
            )
        else:
            reason = (
                f"power of two choices: {winner.name} is less loaded than {loser.name} "
                "(latency x requests in flight)"
            )
        return RouteDecision(
            winner,
            reason,
            {winner.name: first_load, loser.name: second_load},
            (loser, *[state.target for state in others]) if others else (loser,),
        )


def _load(state: TargetState, prior_latency: float) -> float:
    """Expected latency times the requests in flight once this one is added."""
    latency = state.latency_ewma
    if latency is None:
        latency = state.latency_p50
        if latency is None:
            latency = prior_latency
    error_rate = state.error_rate
    if error_rate:
        return latency * (state.in_flight + 1) / (1.0 - min(error_rate, 0.9))
    return latency * (state.in_flight + 1)
