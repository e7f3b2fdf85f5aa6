"""A lease's life: its states, the legal moves between them, and the defaults of its waits."""

from __future__ import annotations

import enum
from typing import Final

__all__ = [
    "DEFAULT_CAPACITY_TIMEOUT",
    "DEFAULT_LEASE_TTL",
    "DEFAULT_READY_TIMEOUT",
    "DEFAULT_RELEASE_TIMEOUT",
    "MIN_RENEW_INTERVAL",
    "TRANSITIONS",
    "LeaseState",
]

DEFAULT_LEASE_TTL: Final = 120.0
DEFAULT_READY_TIMEOUT: Final = 300.0
DEFAULT_CAPACITY_TIMEOUT: Final = 60.0
DEFAULT_RELEASE_TIMEOUT: Final = 30.0
# Renewing more often than this only loads the server.
MIN_RENEW_INTERVAL: Final = 0.01


class LeaseState(enum.Enum):
    """Where a lease is in its life.

    Legal transitions::

        CREATING  -> WAITING    the server accepted the allocation; waiting for ``ready``
        CREATING  -> ACTIVE     it was ready at once
        WAITING   -> ACTIVE     it became ready
        CREATING  -> RELEASING  enter failed or was cancelled; cleaning up
        WAITING   -> RELEASING  idem
        ACTIVE    -> LOST       the server no longer has it (expired, released elsewhere)
        ACTIVE    -> RELEASING  the block ended
        LOST      -> RELEASING  the block ended
        RELEASING -> RELEASED   the GPUs are free
        RELEASING -> ORPHANED   the release gave up; see ``client.orphans()``
    """

    CREATING = "creating"
    WAITING = "waiting"
    ACTIVE = "active"
    LOST = "lost"
    RELEASING = "releasing"
    RELEASED = "released"
    ORPHANED = "orphaned"


TRANSITIONS: Final[dict[LeaseState, frozenset[LeaseState]]] = {
    LeaseState.CREATING: frozenset({LeaseState.WAITING, LeaseState.ACTIVE, LeaseState.RELEASING}),
    LeaseState.WAITING: frozenset({LeaseState.ACTIVE, LeaseState.RELEASING}),
    LeaseState.ACTIVE: frozenset({LeaseState.LOST, LeaseState.RELEASING}),
    LeaseState.LOST: frozenset({LeaseState.RELEASING}),
    LeaseState.RELEASING: frozenset({LeaseState.RELEASED, LeaseState.ORPHANED}),
    LeaseState.RELEASED: frozenset(),
    LeaseState.ORPHANED: frozenset(),
}
