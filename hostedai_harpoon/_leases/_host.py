"""What a lease needs from the client that made it, and nothing more."""

from __future__ import annotations

from typing import Generic, Protocol, TypeVar

import attrs

from .._http._plan import Planner
from ._release import OrphanLedger

__all__ = ["Gate", "LeaseHost"]


class Gate(Protocol):
    """A place under the client's per-pool limit (a thread's or a task's semaphore)."""

    def release(self) -> None:
        """Give the place back."""


DriverT = TypeVar("DriverT")
GateT = TypeVar("GateT", bound=Gate)


@attrs.frozen
class LeaseHost(Generic[DriverT, GateT]):
    """The client's side of a lease, handed to it when it is made.

    ``planner`` plans the client's calls as the user configured them (a lease derives from
    it the patient, breaker-free planner it releases with); ``driver`` carries them out;
    ``ledger`` keeps what could not be released; ``gate`` is the client's per-pool limit on
    allocations, if any.
    """

    planner: Planner
    driver: DriverT
    ledger: OrphanLedger
    gate: GateT | None
    pool_id: str | None
    max_event_bytes: int
