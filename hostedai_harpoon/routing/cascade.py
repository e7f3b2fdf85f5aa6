"""``CascadePolicy``: start small, escalate to the next tier when the answer falls short.

As a policy it routes every request to the bottom of its ladder: the smallest tier (or the
first healthy target of ``order``). After the answer comes back, ``escalate()`` checks it
and, when it falls short, routes the same request one rung up. An answer falls short when
it was cut off (``finish_reason == "length"``), when its text is empty or blank, or when
the ``accept`` predicate returns false. The ``Orchestrator`` runs this loop by itself; run
by hand, it reads::

    decision = route(cascade, request, states)
    result = await infer(decision.target, request)
    while (step := cascade.escalate(request, decision, result, states)) is not None:
        decision = step
        result = await infer(decision.target, request)

``escalate()`` returns ``None`` when the answer is acceptable, when there is no healthy
rung above, or when the request pins a target; pass it fresh ``states``, since the ladder
is re-read from the live state. ``should_escalate(result)`` answers the first question on
its own.

Without ``order`` the ladder is every candidate from the smallest tier up, and escalation
goes to the next tier strictly above the previous target's (several targets in a tier are
alternatives, not rungs). With ``order`` the ladder is exactly those targets in that order
(names accepted); targets not on it are never used.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import attrs

from .._exceptions import ConfigurationError, NoRouteError
from ._base import (
    InferenceOutcome,
    RouteDecision,
    RouteRequest,
    Target,
    TargetState,
    _optional_callable,
    target_refs,
)
from ._order import _by_tier, _Memo
from ._route import _candidates, _checked, _excluded, _resolve, _unknown

__all__ = ["CascadePolicy"]


def _to_order(order: Sequence[Target | str] | None) -> tuple[Target | str, ...] | None:
    if order is None:
        return None
    ladder = target_refs(order, "order")
    if not ladder:
        raise ConfigurationError("order must name at least one target (None: every target)")
    return ladder


@attrs.frozen
class CascadePolicy:
    """Routes to the smallest rung of a ladder and escalates when an answer falls short.

    ``order`` is an explicit ladder, smallest first (targets or names, at least one);
    ``None`` means every target, by tier. ``accept`` (a callable, or ``None``) is an extra
    check on an answer (``InferenceOutcome``: ``text`` and ``finish_reason``): escalate when
    it returns false. The module docstring
    shows how the escalation loop runs.
    """

    order: tuple[Target | str, ...] | None = attrs.field(default=None, converter=_to_order)
    accept: Callable[[InferenceOutcome], bool] | None = attrs.field(
        default=None, validator=_optional_callable
    )
    # When the ladder depends on the targets alone (an explicit order, or one target per
    # tier), so does the first decision: it is worked out once per set of candidates.
    _decisions: _Memo[RouteDecision | None] = attrs.field(
        factory=_Memo, init=False, repr=False, eq=False
    )

    def __call__(self, request: RouteRequest, candidates: Sequence[TargetState]) -> RouteDecision:
        """Route to the bottom of the ladder; the rest of the ladder are the fallbacks."""
        targets = tuple([state.target for state in candidates])
        decisions = self._decisions
        decision = decisions[targets] if targets in decisions else self._learn(targets, candidates)
        if decision is None:
            decision = self._start(self._ladder(candidates), candidates)
        return decision

    def _learn(
        self, targets: tuple[Target, ...], candidates: Sequence[TargetState]
    ) -> RouteDecision | None:
        if self.order is None and len({target.tier for target in targets}) < len(targets):
            return self._decisions.remember(targets, None)
        return self._decisions.remember(targets, self._start(self._ladder(candidates), candidates))

    def _start(
        self, ladder: Sequence[TargetState], candidates: Sequence[TargetState]
    ) -> RouteDecision:
        """The decision for the bottom rung of ``ladder``."""
        if not ladder:
            excluded = _excluded(candidates)
            names = [_name(ref) for ref in self.order or ()]
            raise NoRouteError(
                "no target on the cascade's ladder can take the request",
                reasons={name: excluded.get(name, "left out") for name in names},
            )
        first = ladder[0].target
        return RouteDecision(
            first,
            f"cascade starts at the bottom rung: {first.name} ({first.tier.value} tier)",
            fallbacks=tuple([state.target for state in ladder[1:]]),
        )

    def escalation_reason(self, result: InferenceOutcome) -> str | None:
        """Why ``result`` falls short and calls for a bigger target; None when it does not."""
        if result.finish_reason == "length":
            return "the answer was cut off (finish_reason 'length')"
        if not result.text.strip():
            return "the answer was empty"
        if self.accept is not None and not self.accept(result):
            return "the accept check rejected the answer"
        return None

    def should_escalate(self, result: InferenceOutcome) -> bool:
        """Whether ``result`` falls short and calls for a bigger target."""
        return self.escalation_reason(result) is not None

    def escalate(
        self,
        request: RouteRequest,
        previous: RouteDecision | Target | str,
        result: InferenceOutcome,
        states: Sequence[TargetState | Target],
    ) -> RouteDecision | None:
        """The decision for the next rung up when ``result`` falls short, else None.

        ``previous`` is the decision (or target, or its name) that produced ``result``;
        ``states`` is the live state of every target, as for ``route()``. None means keep
        ``result``: it is acceptable, no healthy rung is above ``previous``, or the request
        pins its target.
        """
        why = self.escalation_reason(result)
        if why is None or request.target is not None:
            return None
        below = _previous_target(previous, states)
        try:
            candidates = _candidates(request, states)
        except NoRouteError:
            return None
        ladder = self._ladder(candidates)
        rungs = self._above(below, ladder)
        if not rungs:
            return None
        chosen = rungs[0].target
        decision = RouteDecision(
            chosen,
            f"escalated from {below.name}: {why}; next rung {chosen.name} "
            f"({chosen.tier.value} tier)",
            fallbacks=tuple([state.target for state in rungs[1:]]),
        )
        return _checked(decision, candidates, self)

    def _ladder(self, candidates: Sequence[TargetState]) -> Sequence[TargetState]:
        """The healthy rungs, bottom first."""
        if self.order is None:
            return _by_tier(candidates, largest=False)
        ladder: list[TargetState] = []
        for ref in self.order:
            state = _resolve(ref, candidates)
            if state is not None and all(rung is not state for rung in ladder):
                ladder.append(state)
        return ladder

    def _above(self, below: Target, ladder: Sequence[TargetState]) -> Sequence[TargetState]:
        """The rungs of ``ladder`` above ``below``, bottom first."""
        if self.order is not None:
            names = [_name(ref) for ref in self.order]
            if below.name in names:
                later = names[names.index(below.name) + 1 :]
                return [state for state in ladder if state.target.name in later]
        rank = below.tier.rank
        return [state for state in ladder if state.target.tier.rank > rank]


def _name(ref: Target | str) -> str:
    return ref if isinstance(ref, str) else ref.name


def _previous_target(
    previous: RouteDecision | Target | str, states: Sequence[TargetState | Target]
) -> Target:
    if isinstance(previous, RouteDecision):
        return previous.target
    if isinstance(previous, Target):
        return previous
    targets = [item.target if isinstance(item, TargetState) else item for item in states]
    for target in targets:
        if target.name == previous:
            return target
    raise _unknown(previous, [target.name for target in targets])
