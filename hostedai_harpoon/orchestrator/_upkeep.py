"""One round of the warm pool's upkeep: lease up to ``min_warm`` per target."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from .. import HostedAIError
from ..routing import Target
from ._slots import Slots

__all__ = ["keep_warm"]

log = logging.getLogger("hostedai_harpoon")


async def keep_warm(warm: Slots, targets: Iterable[Target], min_warm: Mapping[str, int]) -> None:
    """Lease allocations of each target until ``warm`` holds ``min_warm`` of it (or a cap,
    or a refusal, stops it: the next round tries again)."""
    for target in targets:
        for _ in range(min_warm.get(target.name, 0) - warm.count(target)):
            try:
                if await warm.open(target) is None:
                    break
            except HostedAIError as exc:
                log.warning("could not keep %s warm: %s", target.name, exc)
                break
