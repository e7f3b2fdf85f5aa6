"""A lease's life: its states, the legal moves between them, and the defaults of its waits."""

from __future__ import annotations

import enum
import logging
import threading
from typing import ClassVar, Final

from .. import _telemetry as telemetry
from .._exceptions import AllocationError, UsageError
from .._models import Allocation

log = logging.getLogger("hostedai_harpoon")

__all__ = [
    "DEFAULT_CAPACITY_TIMEOUT",
    "DEFAULT_LEASE_TTL",
    "DEFAULT_READY_TIMEOUT",
    "DEFAULT_RELEASE_TIMEOUT",
    "MIN_RENEW_INTERVAL",
    "TRANSITIONS",
    "LeaseLife",
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


class LeaseLife:
    """A lease's state and the moves between them (the flows are ``LeaseCore``'s)."""

    # How a user enters this kind of lease, for the message when it was not.
    _how_to_enter: ClassVar[str]
    # What the lease holds, as its messages call it ("subscription" on hosted·ai's platform).
    _kind: str = "allocation"
    model: str
    state: LeaseState
    allocation: Allocation | None
    lost_error: AllocationError | None
    _entered: bool
    _state_lock: threading.Lock
    _trace: telemetry.AllocationTrace

    def _move(self, to: LeaseState, *, only_from: LeaseState | None = None) -> bool:
        """Take a legal transition; with ``only_from``, only from that state. The keepalive
        thread and the block both move the state, hence the lock."""
        with self._state_lock:
            if to is self.state or (only_from is not None and self.state is not only_from):
                return False
            if to not in TRANSITIONS[self.state]:
                raise AssertionError(f"illegal lease transition {self.state} -> {to}")
            old, self.state = self.state, to
            self._trace.moved(old.value, to.value)
            return True

    @property
    def id(self) -> str:
        """The allocation's id."""
        if self.allocation is None:
            raise AllocationError("the lease has no allocation yet")
        return self.allocation.id

    def _known_id(self) -> str | None:
        return self.allocation.id if self.allocation else None

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} id={self._known_id()!r} model={self.model!r} "
            f"state={self.state.value}>"
        )

    def _check_fresh(self) -> None:
        if self._entered or self.state is not LeaseState.CREATING:
            raise AllocationError(
                "a lease can be entered only once; call client.allocate(...) for another"
            )
        self._entered = True

    def _check_usable(self) -> str:
        """The allocation id, or the reason this lease can take no more work."""
        if self.state is LeaseState.ACTIVE and self.allocation is not None:
            return self.allocation.id
        if self.lost_error is not None:
            raise self.lost_error
        if not self._entered:
            raise UsageError(f"the lease was not entered: use `{self._how_to_enter}`")
        raise AllocationError(
            f"the lease is {self.state.value}; it can take no work",
            allocation_id=self._known_id(),
        )

    def _lose(self, reason: str, cause: BaseException | None = None) -> AllocationError:
        allocation_id = self._known_id()
        error = AllocationError(
            f"{self._kind} {allocation_id} was lost: {reason}", allocation_id=allocation_id
        )
        error.__cause__ = cause
        if self.state is LeaseState.ACTIVE:
            self._trace.errored(error)
        if self._move(LeaseState.LOST, only_from=LeaseState.ACTIVE):
            self.lost_error = error
            log.warning("%s %s was lost: %s", self._kind, allocation_id, reason)
        return error

    def _move_while_entering(self, to: LeaseState) -> None:
        # release() from elsewhere may have run meanwhile: then the lease is over already.
        if to not in TRANSITIONS[self.state]:
            raise AllocationError(
                f"the lease was {self.state.value} while entering", allocation_id=self._known_id()
            )
        self._move(to)

    @staticmethod
    def _finish_exit(exc: BaseException | None, release_error: AllocationError | None) -> None:
        """Never mask the block's own exception: attach the release failure to it."""
        if release_error is None:
            return
        if exc is not None:
            exc.add_note(f"hostedai-harpoon: releasing the allocation also failed: {release_error}")
            return
        raise release_error
