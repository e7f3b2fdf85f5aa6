"""The fleet's warm pool: one replica's calls may run on the warm allocations of another.

At each sync (``_replica.py``) a replica writes what its warm pool holds (its own warm
allocations that the others may use, and the others' that it uses) with the calls in
flight on each, and reads the same from the others. It then:

- *adopts* every other replica's warm allocation it does not use yet: a ``Slot`` around a
  ``RemoteLease`` (inference by the allocation's id) joins its own warm pool, so that a
  one-shot call finds room there before a new allocation is leased;
- lets go of those no longer listed (released, or their owner died);
- counts, on every allocation, the calls the other replicas run on it (``Slot.borrowed``),
  so that ``max_concurrency`` holds across the fleet, and marks its own allocations used
  when another replica used them, so that idle release (by the owner alone) waits for them.

The counts are as fresh as the last sync of each side (``sync_interval``): for that long
a replica may put one more call on an allocation than ``max_concurrency`` allows, or see
room that is gone. Sessions keep their own allocations (their budgets pay for them); only
one-shot calls share. Targets reached by the OpenAI-compatible protocol, and the gpuaas
dialect, are not shared (their inference goes to the allocation's endpoint, not by id).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .. import AsyncHostedAI, InferenceResult, LeaseState
from ..routing import Target
from ._endpoints import RemoteLease
from ._group import Slot
from ._redis import _text
from ._slots import Slots

__all__ = ["SharedWarmPool"]


class SharedWarmPool:
    """This replica's side of the fleet's warm pool (see the module)."""

    def __init__(
        self,
        client: AsyncHostedAI,
        targets: Sequence[Target],
        *,
        clock: Callable[[], float],
        shares: bool,
    ) -> None:
        self._client = client
        self._clock = clock
        self._targets = {
            target.name: target
            for target in targets
            if shares
            and target.endpoint is None
            and (target.inference or client.inference) == "hostedai"
        }
        self.slots: Slots | None = None
        """The orchestrator's warm pool (``attach``)."""
        self.borrowed: dict[str, Slot] = {}
        """Other replicas' allocations in this replica's warm pool, by id."""
        self._tokens: dict[tuple[str, str], str] = {}  # (replica, id) -> its last token
        self.warmer = False
        """Whether this replica keeps the fleet's ``min_warm`` (one replica at a time)."""

    def attach(self, slots: Slots) -> None:
        self.slots = slots

    def usage(self) -> str:
        """This replica's lines for the sync: ``id<TAB>target<TAB>owned<TAB>in flight<TAB>
        token`` for its own warm allocations and for those it borrowed."""
        slots = self.slots
        if slots is None or not self._targets:
            return ""
        lines = [
            f"{slot.allocation_id}\t{slot.target.name}\t1\t{slot.in_use}\t{slot.last_used!r}\n"
            for slot in slots.held()
            if slot.target.name in self._targets and slot.lease.state is LeaseState.ACTIVE
        ]
        lines += [
            f"{key}\t{slot.target.name}\t0\t{slot.in_use}\t{slot.last_used!r}\n"
            for key, slot in self.borrowed.items()
        ]
        return "".join(lines)

    def apply(self, others: Sequence[Any]) -> None:
        """Take in the other replicas' warm pools read at a sync (``replica, [field, value,
        ...]`` pairs)."""
        slots = self.slots
        if slots is None or not self._targets:
            return
        owners: dict[str, tuple[str, str]] = {}
        in_flight: dict[str, int] = {}
        used: set[str] = set()
        tokens: dict[tuple[str, str], str] = {}
        for index in range(0, len(others) - 1, 2):
            replica, fields = _text(others[index]), others[index + 1]
            for at in range(0, len(fields) - 1, 2):
                key = _text(fields[at])
                parts = _text(fields[at + 1]).split("\t")
                if len(parts) != 4 or parts[0] not in self._targets:
                    continue
                name, owned, calls, token = parts
                count = int(calls) if calls.isdigit() else 0
                if owned == "1":
                    owners[key] = (replica, name)
                in_flight[key] = in_flight.get(key, 0) + count
                seen = self._tokens.get((replica, key))
                if count or (seen is not None and seen != token):
                    used.add(key)
                tokens[(replica, key)] = token
        self._tokens = tokens
        now = self._clock()
        for slot in slots.held():
            key = slot.allocation_id
            before, slot.borrowed = slot.borrowed, in_flight.get(key, 0)
            if key in used:
                slot.last_used = now  # another replica used it: not idle
            if slot.borrowed < before:
                slots.pump(slot.target.name)
        for key, slot in list(self.borrowed.items()):
            if key not in owners or slot.lease.state is not LeaseState.ACTIVE:
                del self.borrowed[key]
                slots.disown(slot)
        for key, (owner, name) in owners.items():
            remote = self.borrowed.get(key)
            if remote is None:
                target = self._targets[name]
                self._adopt(slots, key, owner, target, now, in_flight.get(key, 0))
                continue
            before, remote.borrowed = remote.borrowed, in_flight.get(key, 0)
            if remote.borrowed < before:
                slots.pump(name)

    def _adopt(
        self, slots: Slots, key: str, owner: str, target: Target, now: float, borrowed: int
    ) -> None:
        async def elsewhere(prompt: str, options: dict[str, Any]) -> InferenceResult:
            place, share = await slots.acquire(target)
            try:
                result = await place.lease.infer(prompt, **options)
            except BaseException:
                slots.release(place, share)
                raise
            slots.release(place, share)
            return result

        slot = Slot(target, RemoteLease(self._client, key, owner, elsewhere), None, now)
        slot.borrowed = borrowed
        self.borrowed[key] = slot
        slots.adopt(slot)

    def forget(self) -> None:
        """Redis is down: the others' allocations are no longer watched; stop using them."""
        slots = self.slots
        if slots is None:
            return
        for slot in self.borrowed.values():
            slots.disown(slot)
        self.borrowed.clear()
        self._tokens.clear()
        for slot in slots.held():
            if slot.borrowed:
                slot.borrowed = 0
                slots.pump(slot.target.name)
        self.warmer = False

    def min_warm(self, wanted: Mapping[str, int], local: bool) -> Mapping[str, int]:
        """The allocations per target this replica keeps warm: the fleet's ``min_warm``
        on the warmer, none on the others (``local``: Redis is down, each replica keeps
        its own)."""
        return wanted if local or self.warmer else {}
