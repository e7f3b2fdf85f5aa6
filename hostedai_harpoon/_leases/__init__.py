"""GPU leases: allocations that are released on every way out of a ``with`` block.

- ``_state``: ``LeaseState`` and its legal transitions, the default waits;
- ``_host``: what a lease needs from its client (``LeaseHost``);
- ``_core``: every decision of a lease, as flows of the client's plans (enter, keepalive, work);
- ``_release``: every place a GPU is given back, orphans, and the guards around a release;
- ``_sync``, ``_async``: ``Lease`` and ``AsyncLease``, the I/O around the flows.

The ways out of a block and what guarantees the release on each:

- return, exception, ``KeyboardInterrupt``, ``SystemExit``: ``__exit__``/``__aexit__``;
- asyncio cancellation, also during enter: a release that a cancellation cuts short starts
  again in a task the cancellation cannot reach, bounded by ``release_timeout``, and the
  cancellation is delivered once it is done; Ctrl-C is held back during a sync release;
- cancelled or interrupted while the allocation was being created, before its id was
  known: the create is replayed with the same ``Idempotency-Key``, which returns what the
  server made, and that is released;
- the interpreter exits while a block is still open: an ``atexit`` hook releases it;
- the release itself fails or is interrupted: the allocation goes to ``client.orphans()``
  with a warning naming it, for ``client.release_orphans()`` to try again;
- the process is killed outright: the allocation's TTL, renewed only while the lease is
  alive, lets the server reclaim the GPUs.
"""

from ._async import AsyncLease
from ._host import LeaseHost
from ._release import OrphanedAllocation, OrphanLedger, release_orphans_flow
from ._state import (
    DEFAULT_CAPACITY_TIMEOUT,
    DEFAULT_LEASE_TTL,
    DEFAULT_READY_TIMEOUT,
    DEFAULT_RELEASE_TIMEOUT,
    LeaseState,
)
from ._sync import Lease

__all__ = [
    "DEFAULT_CAPACITY_TIMEOUT",
    "DEFAULT_LEASE_TTL",
    "DEFAULT_READY_TIMEOUT",
    "DEFAULT_RELEASE_TIMEOUT",
    "AsyncLease",
    "Lease",
    "LeaseHost",
    "LeaseState",
    "OrphanLedger",
    "OrphanedAllocation",
    "release_orphans_flow",
]
