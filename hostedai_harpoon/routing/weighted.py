"""``WeightedPolicy``: split traffic over targets in fixed proportions, reproducibly.

Each request draws a number from ``seed`` and the request itself (its length, the head and
tail of its prompt, and ``max_tokens``), not from a random generator: the same request always gets
the same target, in every run and process, and distinct requests spread over the targets
in proportion to their weights. Weights are relative among the healthy candidates: when
a target is left out, its share goes to the others. A weight for a name that matches no
target at all is a ``ConfigurationError``, raised at the first decision (the policy
learns the targets from ``route()``).
"""

from __future__ import annotations

import math
import sys
from bisect import bisect_right
from collections.abc import Mapping, Sequence
from itertools import accumulate

import attrs

from .._checks import check_mapping, check_number
from .._exceptions import ConfigurationError
from ._base import RouteDecision, RouteRequest, Target, TargetState, _whole, target_refs
from ._order import _figures, _Memo, _request_hash
from ._route import _excluded

__all__ = ["WeightedPolicy"]

_SMALLEST_NORMAL = sys.float_info.min


def _to_weights(weights: Mapping[Target | str, float] | None) -> Mapping[str, float] | None:
    if weights is None:
        return None
    by_name: dict[str, float] = {}
    refs = target_refs(list(check_mapping(weights, "weights", "targets to weights")), "weights")
    for ref in refs:
        name = ref if isinstance(ref, str) else ref.name
        by_name[name] = float(check_number(weights[ref], f"weights[{name!r}]", 0, math.inf))
    return by_name


@attrs.frozen
class _Plan:
    """The draw over one set of candidates: cumulative weights and the decision per slot.

    ``absent`` holds the weighted names that are not among the candidates: each must be a
    target ``route()`` left out, or the weights name a target that does not exist.
    """

    bounds: list[float]
    decisions: tuple[RouteDecision, ...]
    absent: frozenset[str]


@attrs.frozen
class WeightedPolicy:
    """Sends each request to a candidate drawn in proportion to ``weights``.

    ``weights`` maps targets (or their names) to relative weights, finite numbers >= 0;
    ``None`` weighs every target equally, and a target missing from the mapping weighs 0.
    ``seed`` is an integer. When every healthy candidate weighs 0 the draw is uniform
    among them, so a request is never refused.
    ``scores`` holds each candidate's share of the draw. A weighted name that matches no
    target routed over raises ``ConfigurationError`` when deciding; one that names a
    target left out of the candidates (unhealthy, say) just gives its share to the others.
    """

    weights: Mapping[str, float] | None = attrs.field(default=None, converter=_to_weights)
    seed: int = attrs.field(default=0, validator=_whole)
    # Everything but the draw depends only on the candidates, so it is worked out once per
    # set of candidates and kept: a decision is then a hash and a bisection.
    _plans: _Memo[_Plan] = attrs.field(factory=_Memo, init=False, repr=False, eq=False)

    def __call__(self, request: RouteRequest, candidates: Sequence[TargetState]) -> RouteDecision:
        """Draw one of ``candidates`` by weight."""
        targets = tuple([state.target for state in candidates])
        plan = self._plans.get(targets)
        if plan is None:
            plan = self._plan(targets)
        if plan.absent:
            _check_known(plan.absent, candidates)
        bounds = plan.bounds
        # 24 bits of the hash, so that the point stays below the total after rounding.
        point = (_request_hash(request, self.seed) >> 8) * bounds[-1] / 16777216.0
        return plan.decisions[bisect_right(bounds, point)]

    def _plan(self, targets: tuple[Target, ...]) -> _Plan:
        weights = self.weights
        if weights is None:
            shares = [1.0] * len(targets)
        else:
            shares = [weights.get(target.name, 0.0) for target in targets]
        basis = "weighted draw"
        total = sum(shares)
        if total <= 0:
            shares = [1.0] * len(targets)
            basis = "uniform draw: no healthy target has a weight"
        elif not _SMALLEST_NORMAL <= total < math.inf:
            # A denormal total lets the draw round up onto the last bound, and an infinite
            # one makes it inf or nan: weigh relative to the largest weight instead.
            largest = max(shares)
            shares = [share / largest for share in shares]
        total = sum(shares)
        scores = {target.name: share / total for target, share in zip(targets, shares, strict=True)}
        decisions = tuple(
            RouteDecision(
                target,
                f"{basis} (seed {self.seed}): {target.name}, {_percent(scores[target.name])} of "
                "the draw",
                scores,
                tuple([other for other in targets if other is not target]),
            )
            for target in targets
        )
        names = {target.name for target in targets}
        absent = frozenset(() if weights is None else weights.keys() - names)
        plan = _Plan(list(accumulate(shares)), decisions, absent)
        return self._plans.remember(targets, plan)


def _percent(share: float) -> str:
    """``share`` as a percentage that reads 0% or 100% only when it is exactly that."""
    [percent, _, _] = _figures((share * 100, 0.0, 100.0), places=0)
    return f"{percent}%"


def _check_known(absent: frozenset[str], candidates: Sequence[TargetState]) -> None:
    """Raise ``ConfigurationError`` unless every name in ``absent`` is a left-out target."""
    excluded = _excluded(candidates)
    unknown = sorted(name for name in absent if name not in excluded)
    if unknown:
        known = [*(state.target.name for state in candidates), *excluded]
        raise ConfigurationError(
            f"WeightedPolicy weights name unknown target(s) {', '.join(map(repr, unknown))}; "
            f"the known targets are {', '.join(map(repr, known))}"
        )
