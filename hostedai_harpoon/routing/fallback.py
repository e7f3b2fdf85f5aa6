"""``FallbackPolicy``: wrap any policy with an ordered list of targets to fall back on.

The wrapped policy decides as usual; the fallback list, resolved against the healthy
candidates, goes in front of the decision's own fallbacks: the targets to try, in that
order, when the chosen one fails. When the wrapped policy finds no route
(it raises ``NoRouteError``) the first healthy fallback is chosen instead. Fallbacks that
are not healthy right now are skipped; a name that matches no target at all is a
``ConfigurationError``.
"""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from .._exceptions import NoRouteError
from ._base import (
    RouteDecision,
    RouteRequest,
    RoutingPolicy,
    Target,
    TargetState,
    _a_policy,
    target_refs,
)
from ._route import _resolve

__all__ = ["FallbackPolicy"]


def _to_fallbacks(fallbacks: Sequence[Target | str]) -> tuple[Target | str, ...]:
    return target_refs(fallbacks, "fallbacks")


@attrs.frozen
class FallbackPolicy:
    """``policy``'s decision, with ``fallbacks`` (targets or names) tried first on failure.

    For example ``FallbackPolicy(ComplexityPolicy(), fallbacks=["gemma-3-270m"])``.
    """

    policy: RoutingPolicy = attrs.field(validator=_a_policy)
    fallbacks: tuple[Target | str, ...] = attrs.field(converter=_to_fallbacks)

    def __call__(self, request: RouteRequest, candidates: Sequence[TargetState]) -> RouteDecision:
        """Decide with the wrapped policy, then put the healthy fallbacks first in line."""
        healthy: list[Target] = []
        for ref in self.fallbacks:
            state = _resolve(ref, candidates)
            if state is not None:
                healthy.append(state.target)
        try:
            decision = self.policy(request, candidates)
        except NoRouteError as error:
            if not healthy:
                raise
            chosen = healthy[0]
            return RouteDecision(
                chosen,
                f"the wrapped policy found no route ({error}); first healthy fallback: "
                f"{chosen.name}",
                fallbacks=_without(chosen, healthy),
            )
        chosen = decision.target
        fallbacks = _without(chosen, [*healthy, *decision.fallbacks])
        if fallbacks == decision.fallbacks:
            return decision
        return RouteDecision(chosen, decision.reason, decision.scores, fallbacks)


def _without(chosen: Target, targets: list[Target]) -> tuple[Target, ...]:
    """``targets`` in order, without ``chosen`` and without repeats (by name)."""
    seen = {chosen.name}
    kept: list[Target] = []
    for target in targets:
        if target.name not in seen:
            seen.add(target.name)
            kept.append(target)
    return tuple(kept)
