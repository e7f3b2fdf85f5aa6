"""``CostPolicy``: the cheapest healthy target that can take the request."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from ._base import RouteDecision, RouteRequest, Target, TargetState
from ._order import _figures, _Memo, _preference

__all__ = ["CostPolicy"]


@attrs.frozen
class CostPolicy:
    """Routes every request to the candidate with the lowest hourly cost.

    A target's hourly cost is its GPU count times its price per GPU-hour. Ties go to a
    closed breaker, then a warm allocation, then fewer requests in flight, then the name.
    ``scores`` holds each candidate's hourly cost; the fallbacks are the other candidates,
    cheapest first.
    """

    # When no two candidates cost the same, the decision depends on the targets alone: it
    # is worked out once per set of candidates and kept.
    _decisions: _Memo[RouteDecision | None] = attrs.field(
        factory=_Memo, init=False, repr=False, eq=False
    )

    def __call__(self, request: RouteRequest, candidates: Sequence[TargetState]) -> RouteDecision:
        """Choose the cheapest of ``candidates``."""
        targets = tuple([state.target for state in candidates])
        decisions = self._decisions
        decision = decisions[targets] if targets in decisions else self._learn(targets)
        if decision is not None:
            return decision
        return _cheapest([state.target for state in sorted(candidates, key=_cost_then_preference)])

    def _learn(self, targets: tuple[Target, ...]) -> RouteDecision | None:
        costs = {target.cost_per_hour for target in targets}
        if len(costs) < len(targets):
            return self._decisions.remember(targets, None)
        return self._decisions.remember(targets, _cheapest(sorted(targets, key=_cost_of)))


def _cheapest(ranked: Sequence[Target]) -> RouteDecision:
    chosen = ranked[0]
    # A paid target never reads as free: "$0.004/hour", not "$0.00/hour".
    [price, _] = _figures((chosen.cost_per_hour, 0.0))
    return RouteDecision(
        chosen,
        f"cheapest healthy target: {chosen.name} at ${price}/hour",
        {target.name: target.cost_per_hour for target in ranked},
        tuple(ranked[1:]),
    )


def _cost_of(target: Target) -> float:
    return target.cost_per_hour


def _cost_then_preference(
    state: TargetState,
) -> tuple[float, tuple[bool, bool, float, int, str]]:
    return (state.target.cost_per_hour, _preference(state))
