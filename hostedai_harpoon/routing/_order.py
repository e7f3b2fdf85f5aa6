"""What policies share: orderings of candidates, numbers written so a reason reads true,
a small per-policy memo, and a stable hash of a request."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from typing import TypeVar

from .._resilience import CircuitState
from ._base import RouteRequest, Target, TargetState


def _preference(state: TargetState) -> tuple[bool, bool, float, int, str]:
    """Sort key among targets of one tier: closed breaker, warm, cheap, idle, then by name."""
    return (
        state.circuit is not CircuitState.CLOSED,
        state.warm_allocations == 0,
        state.target.cost_per_hour,
        state.in_flight,
        state.target.name,
    )


def _smallest_first(state: TargetState) -> tuple[int, tuple[bool, bool, float, int, str]]:
    return (state.target.tier.rank, _preference(state))


def _largest_first(state: TargetState) -> tuple[int, tuple[bool, bool, float, int, str]]:
    return (-state.target.tier.rank, _preference(state))


def _by_tier(candidates: Sequence[TargetState], largest: bool) -> Sequence[TargetState]:
    """The candidates from the smallest tier up (or the largest down), preferred first in a tier."""
    if len(candidates) == 2:
        first, second = candidates
        first_rank, second_rank = first.target.tier.rank, second.target.tier.rank
        if first_rank != second_rank:
            in_order = (first_rank < second_rank) is not largest
            return candidates if in_order else (second, first)
    if len(candidates) == 1:
        return candidates
    return sorted(candidates, key=_largest_first if largest else _smallest_first)


def _figures(values: Sequence[float], places: int = 2) -> list[str]:
    """``values`` written with at least ``places`` decimals, and more where needed.

    Values that differ are written differently: rounding to a common number of decimals
    keeps their order, so a printed comparison (``0.349 <= 0.35``, never ``0.35 <= 0.35``)
    reads the way it came out. Zeros past ``places`` are dropped.
    """
    distinct = len(set(values))
    for decimals in range(places, 18):
        shown = [f"{value:.{decimals}f}" for value in values]
        if len(set(shown)) == distinct:
            break
    else:
        return [repr(value) for value in values]
    if decimals == places:
        return shown
    trimmed = []
    for text in shown:
        whole, _, fraction = text.partition(".")
        fraction = fraction.rstrip("0").ljust(places, "0")
        trimmed.append(f"{whole}.{fraction}" if fraction else whole)
    return trimmed


_Kept = TypeVar("_Kept")


class _Memo(dict[tuple[Target, ...], _Kept]):
    """What a policy works out once per set of candidate targets, kept for the next call.

    It holds a few dozen entries at most. A copy or a pickle of the policy starts empty.
    """

    def remember(self, targets: tuple[Target, ...], value: _Kept) -> _Kept:
        """Keep ``value`` for ``targets`` and return it."""
        if len(self) >= 64:
            self.clear()
        self[targets] = value
        return value

    def __reduce__(self) -> tuple[type[_Memo[_Kept]], tuple[()]]:
        return (type(self), ())


def _request_hash(request: RouteRequest, seed: int) -> int:
    """A 32-bit hash of the request and ``seed``, the same in every process and run.

    A long prompt is sampled (its head, its tail and its length) so hashing stays cheap.
    """
    prompt = request.prompt
    sample = prompt if len(prompt) <= 256 else prompt[:64] + prompt[-192:]
    start = (seed + len(prompt) * 0x9E3779B1 + request.max_tokens) & 0xFFFFFFFF
    value = zlib.crc32(sample.encode("utf-8", "surrogatepass"), start) * 0x9E3779B1 & 0xFFFFFFFF
    return value ^ (value >> 15)
