"""Leases: GPU allocations that are released on every way out of a ``with`` block.

The flows of a lease (enter: create and wait until ready; keep alive; release; clean up
after a failed enter) are written once, as generators that yield two kinds of step: "call
this client method" and "sleep this long". ``Lease`` drives them with the sync client and
``time.sleep``, ``AsyncLease`` with the async client and ``asyncio.sleep``. So every
decision (how long to wait for capacity, when the GPUs are lost, what counts as released)
lives in ``_LeaseCore`` and both twins inherit it.

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

from __future__ import annotations

import atexit
import enum
import logging
import signal
import threading
import time
import weakref
from collections.abc import Awaitable, Callable, Coroutine, Generator, Iterator
from contextlib import contextmanager, suppress
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, ClassVar, Generic, NoReturn, Self, TypeVar

import attrs

from ._checks import (
    check_gpus,
    check_idempotency_key,
    check_optional_text,
    check_seconds,
    check_text,
    ttl_seconds,
)
from ._config import new_idempotency_key
from ._exceptions import (
    AllocationError,
    APIStatusError,
    CapacityError,
    CircuitOpenError,
    ConfigurationError,
    GoneError,
    HostedAIError,
    NotFoundError,
    ResponseValidationError,
    UsageError,
)
from ._models import Allocation, AllocationStatus, InferenceResult
from ._resilience import RetryPolicy

if TYPE_CHECKING:
    import asyncio

    from ._client import (
        AsyncHostedAI,
        AsyncInferenceStream,
        BaseClient,
        HostedAI,
        InferenceStream,
    )

__all__ = ["AsyncLease", "Lease", "LeaseState", "OrphanLedger", "OrphanedAllocation"]

log = logging.getLogger("hostedai_harpoon")

T = TypeVar("T")
ClientT = TypeVar("ClientT", bound="BaseClient[Any, Any]")

DEFAULT_LEASE_TTL = 120.0
DEFAULT_READY_TIMEOUT = 300.0
DEFAULT_CAPACITY_TIMEOUT = 60.0
DEFAULT_RELEASE_TIMEOUT = 30.0

# Renewing more often than this only loads the server.
MIN_RENEW_INTERVAL = 0.01

_GARBLED_ANSWER_TRIES = 3


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


_TRANSITIONS: dict[LeaseState, frozenset[LeaseState]] = {
    LeaseState.CREATING: frozenset({LeaseState.WAITING, LeaseState.ACTIVE, LeaseState.RELEASING}),
    LeaseState.WAITING: frozenset({LeaseState.ACTIVE, LeaseState.RELEASING}),
    LeaseState.ACTIVE: frozenset({LeaseState.LOST, LeaseState.RELEASING}),
    LeaseState.LOST: frozenset({LeaseState.RELEASING}),
    LeaseState.RELEASING: frozenset({LeaseState.RELEASED, LeaseState.ORPHANED}),
    LeaseState.RELEASED: frozenset(),
    LeaseState.ORPHANED: frozenset(),
}


@attrs.frozen
class OrphanedAllocation:
    """An allocation the SDK could not release: it may still be billing.

    ``allocation_id`` is ``None`` when only the idempotency key is known (the create may
    or may not have happened). Release it with ``client.release_orphans()`` or by hand.
    """

    allocation_id: str | None
    idempotency_key: str
    model: str
    error: str
    gpus: int = 1
    gpu_type: str | None = None
    pool_id: str | None = None
    ttl_seconds: int | None = None


class OrphanLedger:
    """The allocations a client could not release. An orphan leaves it only once released,
    so an interrupted or failing clean-up loses none. Shared by a client and its copies."""

    def __init__(self) -> None:
        self._orphans: list[OrphanedAllocation] = []
        self._lock = threading.Lock()  # keepalive threads and the block record orphans

    def add(self, orphan: OrphanedAllocation) -> None:
        """Record an allocation that could not be released."""
        with self._lock:
            self._orphans.append(orphan)

    def snapshot(self) -> list[OrphanedAllocation]:
        """The orphans now, oldest first."""
        with self._lock:
            return list(self._orphans)

    def discard(self, orphan: OrphanedAllocation) -> None:
        """Forget an orphan that is released now."""
        with self._lock:
            for index, held in enumerate(self._orphans):
                if held is orphan:
                    del self._orphans[index]
                    return


class _Invoke:
    """Step: call ``getattr(client, name)(**kwargs)``; its result or error comes back."""

    __slots__ = ("kwargs", "name")

    def __init__(self, name: str, **kwargs: Any) -> None:
        self.name = name
        self.kwargs = kwargs


class Sleep:
    """Step: wait this many seconds (the clients' retry plans yield it too)."""

    __slots__ = ("seconds",)

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds


_Step = _Invoke | Sleep
_Flow = Generator[_Step, Any, T]
_Ending = tuple[BaseException | None, bool]


# 4xx answers that do not settle whether an earlier attempt of the same create got through:
# a timeout, an idempotency conflict (something was made with this key), a rate limit.
_UNSETTLED_4XX = frozenset({408, 409, 429})


def nothing_was_made(error: BaseException) -> bool:
    """Whether a create call that failed with ``error`` certainly made no allocation.

    A full pool, a request refused before it was sent (the breaker refuses only a call's
    first attempt: a refused retry raises the last attempt's error) and a definite 4xx say
    so: an earlier attempt that got through would have bound the key, and the replay would
    have answered with its allocation. Anything else (a timeout, a 5xx, a 429) leaves it open.
    """
    if isinstance(error, CapacityError | ConfigurationError | CircuitOpenError):
        return True
    return (
        isinstance(error, APIStatusError)
        and 400 <= error.status_code < 500
        and error.status_code not in _UNSETTLED_4XX
    )


class _LeaseCore(Generic[ClientT]):
    """Everything a lease decides, for both twins. The I/O is the driver's."""

    def __init__(
        self,
        client: ClientT,
        *,
        model: str,
        gpus: int,
        gpu_type: str | None,
        pool_id: str | None,
        ttl: float | timedelta | None,
        ready_timeout: float,
        capacity_timeout: float,
        release_timeout: float,
        renew_interval: float | None,
        idempotency_key: str | None,
    ) -> None:
        self._client = client
        self.model = check_text(model, "model")
        self.gpus = check_gpus(gpus)
        self.gpu_type = check_optional_text(gpu_type, "gpu_type")
        self.pool_id = (
            check_optional_text(pool_id, "pool_id") if pool_id is not None else client.pool_id
        )
        self.ttl_seconds = ttl_seconds(ttl)
        self.ready_timeout = check_seconds(ready_timeout, "ready_timeout")
        self.capacity_timeout = check_seconds(capacity_timeout, "capacity_timeout")
        self.release_timeout = check_seconds(release_timeout, "release_timeout", positive=True)
        self._renew_interval = (
            None
            if renew_interval is None
            else check_seconds(renew_interval, "renew_interval", minimum=MIN_RENEW_INTERVAL)
        )
        self.idempotency_key = check_idempotency_key(idempotency_key) or new_idempotency_key()
        self.state = LeaseState.CREATING
        self._state_lock = threading.Lock()
        self.allocation: Allocation | None = None
        self.lost_error: AllocationError | None = None
        # Whether a create may have made the allocation while its id is still unknown.
        self._create_sent = False
        # A create was answered (garbled): the server made something under the key.
        self._create_answered = False
        self._entered = False
        self._release_client = client._for_release(release_timeout)

    # State

    def _move(self, to: LeaseState, *, only_from: LeaseState | None = None) -> bool:
        """Take a legal transition; with ``only_from``, only from that state. The keepalive
        thread and the block both move the state, hence the lock."""
        with self._state_lock:
            if to is self.state or (only_from is not None and self.state is not only_from):
                return False
            if to not in _TRANSITIONS[self.state]:
                raise AssertionError(f"illegal lease transition {self.state} -> {to}")
            self.state = to
            return True

    @property
    def id(self) -> str:
        """The allocation's id."""
        if self.allocation is None:
            raise AllocationError("the lease has no allocation yet")
        return self.allocation.id

    def __repr__(self) -> str:
        allocation_id = self._known_id()
        return (
            f"<{type(self).__name__} id={allocation_id!r} model={self.model!r} "
            f"state={self.state.value}>"
        )

    # How a user enters this kind of lease, for the message when it was not.
    _how_to_enter: ClassVar[str]

    # The place this lease holds under the client's per-pool limit, if any.
    _slot: threading.Semaphore | asyncio.Semaphore | None = None

    def _release_slot(self) -> None:
        gate, self._slot = self._slot, None
        if gate is not None:
            gate.release()

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
            f"allocation {allocation_id} was lost: {reason}", allocation_id=allocation_id
        )
        error.__cause__ = cause
        if self._move(LeaseState.LOST, only_from=LeaseState.ACTIVE):
            self.lost_error = error
            log.warning("allocation %s was lost: %s", allocation_id, reason)
        return error

    def _work(self, method: str, **options: Any) -> _Flow[Any]:
        """One call on the allocation: refused when the lease can take no work; an answer
        saying the allocation is gone marks the lease lost."""
        allocation_id = self._check_usable()
        try:
            result = yield _Invoke(method, allocation_id=allocation_id, **options)
        except HostedAIError as exc:
            raise self._on_work_error(exc) from exc
        return result

    def _on_work_error(self, exc: HostedAIError) -> BaseException:
        """A call on the lease failed: a gone allocation means the lease is lost."""
        if isinstance(exc, GoneError | NotFoundError):
            return self._lose(f"the server answered {exc.status_code} {exc.code}", exc)
        return exc

    @property
    def renew_interval(self) -> float:
        """Seconds between renewals: a third of the TTL, so two can fail before expiry."""
        if self._renew_interval is not None:
            return self._renew_interval
        ttl = self.allocation.ttl_seconds if self.allocation else self.ttl_seconds
        return max(0.05, (ttl or DEFAULT_LEASE_TTL) / 3.0)

    # Flows

    def _create_kwargs(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "gpus": self.gpus,
            "gpu_type": self.gpu_type,
            "pool_id": self.pool_id,
            "ttl": self.ttl_seconds,
            "idempotency_key": self.idempotency_key,
        }

    def _create(self) -> _Flow[Allocation]:
        """Create (or, with the same key, find again) the allocation.

        A garbled answer is asked again: the server may well have made the allocation, and
        replaying the key is how to learn its id.
        """
        tries = 1
        while True:
            try:
                # The lease waits out full pools itself, within its capacity timeout.
                allocation: Allocation = yield _Invoke("_create_for_lease", **self._create_kwargs())
            except ResponseValidationError:
                self._create_answered = True
                if tries == _GARBLED_ANSWER_TRIES:
                    raise
                tries += 1
                continue
            return allocation

    def _enter_flow(self) -> _Flow[Allocation]:
        """Create the allocation (waiting out full pools) and wait until it is ready."""
        started = time.monotonic()
        waits = RetryPolicy(initial_backoff=0.25, max_backoff=5.0).backoff_delays()
        allocation: Allocation
        while True:
            self._create_sent = True
            try:
                allocation = yield from self._create()
                break
            except CapacityError as exc:
                self._create_sent = self._create_answered  # a full pool binds nothing to the key
                # Never sooner than the server asked, and backing off if it keeps asking.
                wait = max(exc.retry_after or 0.0, next(waits))
                if time.monotonic() + wait - started > self.capacity_timeout:
                    raise AllocationError(
                        f"no capacity for {self.gpus} GPU(s) of {self.model} within "
                        f"{self.capacity_timeout}s"
                    ) from exc
                log.info("pool full for %s; trying again in %.2fs", self.model, wait)
                yield Sleep(wait)
            except HostedAIError as exc:
                if nothing_was_made(exc):
                    self._create_sent = self._create_answered
                raise
        self.allocation = allocation
        self._move_while_entering(LeaseState.WAITING)
        polls = RetryPolicy(initial_backoff=0.05, max_backoff=2.0, jitter=False).backoff_delays()
        ready_by = time.monotonic() + self.ready_timeout
        while allocation.status is not AllocationStatus.READY:
            if allocation.status is not AllocationStatus.PENDING:
                raise AllocationError(
                    f"allocation {allocation.id} is {allocation.status.value}, not ready",
                    allocation_id=allocation.id,
                )
            wait = min(next(polls), max(0.0, ready_by - time.monotonic()))
            if wait <= 0:
                raise AllocationError(
                    f"allocation {allocation.id} was not ready within {self.ready_timeout}s",
                    allocation_id=allocation.id,
                )
            yield Sleep(wait)
            polled: Allocation = yield _Invoke("get_allocation", allocation_id=allocation.id)
            self.allocation = allocation = polled
        self._move_while_entering(LeaseState.ACTIVE)
        return allocation

    def _move_while_entering(self, to: LeaseState) -> None:
        # release() from elsewhere may have run meanwhile: then the lease is over already.
        if to not in _TRANSITIONS[self.state]:
            raise AllocationError(
                f"the lease was {self.state.value} while entering", allocation_id=self._known_id()
            )
        self._move(to)

    def _known_id(self) -> str | None:
        return self.allocation.id if self.allocation else None

    def _keepalive_flow(self) -> _Flow[None]:
        """Renew the TTL until stopped; mark the lease lost if the server lets it go."""
        while self.state is LeaseState.ACTIVE and self.allocation is not None:
            yield Sleep(self.renew_interval)
            if self.state is not LeaseState.ACTIVE:
                return
            try:
                renewed = yield _Invoke(
                    "renew_allocation", allocation_id=self.allocation.id, ttl=self.ttl_seconds
                )
            except (GoneError, NotFoundError) as exc:
                self._lose(f"renewal answered {exc.status_code} {exc.code}", exc)
                return
            except HostedAIError as exc:
                expires_at = self.allocation.expires_at
                if expires_at is not None and expires_at.timestamp() <= time.time():
                    self._lose("renewals failed until the TTL ran out", exc)
                    return
                log.warning("renewing allocation %s failed: %s", self.allocation.id, exc)
                continue
            if self.state is LeaseState.ACTIVE:
                self.allocation = renewed

    def _release_flow(self) -> _Flow[None]:
        """Release what was created; record an orphan if that proves impossible."""
        if self.state in (LeaseState.RELEASED, LeaseState.ORPHANED):
            return
        self._move(LeaseState.RELEASING)
        allocation_id = self._known_id()
        try:
            if allocation_id is None and self._create_sent:
                # The create may have reached the server: replaying it with the same key
                # returns what it made (or makes one, which is released all the same).
                try:
                    found = yield from self._create()
                except HostedAIError as exc:
                    if nothing_was_made(exc) and not self._create_answered:
                        self._move(LeaseState.RELEASED)
                        return
                    raise
                allocation_id = found.id
                self.allocation = found
            if allocation_id is not None:
                yield _Invoke("release_allocation", allocation_id=allocation_id)
                log.debug("released allocation %s", allocation_id)
            self._move(LeaseState.RELEASED)
        except Exception as exc:  # whatever went wrong, the allocation must not go unrecorded
            raise self._orphaned(f"{type(exc).__name__}: {exc}") from exc

    def _interrupted(self, interrupt: BaseException) -> None:
        """The release itself was cut short: what it did not finish is an orphan."""
        if self.state not in (LeaseState.RELEASED, LeaseState.ORPHANED):
            self._move(LeaseState.RELEASING)
            self._orphaned(f"the release was interrupted by {type(interrupt).__name__}")

    def _orphaned(self, why: str) -> AllocationError:
        """Give up on the release: keep the allocation in ``client.orphans()`` and say so."""
        self._move(LeaseState.ORPHANED, only_from=LeaseState.RELEASING)
        allocation_id = self._known_id()
        self._client._orphans.add(
            OrphanedAllocation(
                allocation_id=allocation_id,
                idempotency_key=self.idempotency_key,
                model=self.model,
                error=why,
                gpus=self.gpus,
                gpu_type=self.gpu_type,
                pool_id=self.pool_id,
                ttl_seconds=self.ttl_seconds,
            )
        )
        log.warning(
            "could not release allocation %s (idempotency key %s): %s; it is kept in "
            "client.orphans()",
            allocation_id,
            self.idempotency_key,
            why,
        )
        return AllocationError(
            f"could not release allocation {allocation_id}: {why}", allocation_id=allocation_id
        )

    def _finish_exit(
        self, exc: BaseException | None, release_error: AllocationError | None
    ) -> None:
        """Never mask the block's own exception: attach the release failure to it."""
        if release_error is None:
            return
        if exc is not None:
            exc.add_note(f"hostedai-harpoon: releasing the allocation also failed: {release_error}")
            return
        raise release_error


# Driving flows ------------------------------------------------------------------------------


def drive(flow: _Flow[T], client: HostedAI, sleep: Callable[[float], bool] | None = None) -> T:
    """Carry out a flow with the sync client; ``sleep`` returning False ends it early."""
    if sleep is None:
        sleep = _sleep_with_client_hook
    value: Any = None
    error: Exception | None = None
    try:
        while True:
            step = flow.send(value) if error is None else flow.throw(error)
            value, error = None, None
            if isinstance(step, Sleep):
                if not sleep(step.seconds):
                    flow.close()
                    return None  # type: ignore[return-value]
                continue
            try:
                value = getattr(client, step.name)(**step.kwargs)
            except Exception as exc:  # the flow decides what each failure means
                error = exc
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        flow.close()


async def adrive(
    flow: _Flow[T],
    client: AsyncHostedAI,
    sleep: Callable[[float], Awaitable[None]] | None = None,
) -> T:
    """Carry out a flow with the async client."""
    if sleep is None:
        from . import _client  # the clients' sleep hook, so tests control all waiting

        sleep = _client._async_sleep
    value: Any = None
    error: Exception | None = None
    try:
        while True:
            step = flow.send(value) if error is None else flow.throw(error)
            value, error = None, None
            if isinstance(step, Sleep):
                await sleep(step.seconds)
                continue
            try:
                value = await getattr(client, step.name)(**step.kwargs)
            except Exception as exc:  # the flow decides what each failure means
                error = exc
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]
    finally:
        flow.close()


def _sleep_with_client_hook(seconds: float) -> bool:
    from . import _client  # the clients' sleep hook, so tests control all waiting at once

    _client._sleep(seconds)
    return True


def release_orphan_flow(orphan: OrphanedAllocation) -> _Flow[None]:
    """Release an orphan, finding it first by its key when its id was never learnt.

    The same decision as a lease's release: a replay that proves nothing was made ends it.
    """
    allocation_id = orphan.allocation_id
    if allocation_id is None:
        try:
            found: Allocation = yield _Invoke(
                "_create_for_lease",
                model=orphan.model,
                gpus=orphan.gpus,
                gpu_type=orphan.gpu_type,
                pool_id=orphan.pool_id,
                ttl=orphan.ttl_seconds,
                idempotency_key=orphan.idempotency_key,
            )
        except HostedAIError as exc:
            if nothing_was_made(exc):
                return
            raise
        allocation_id = found.id
    yield _Invoke("release_allocation", allocation_id=allocation_id)


# The sync lease ----------------------------------------------------------------------------


@contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold back Ctrl-C while a release runs (main thread only), then deliver it. A second
    Ctrl-C means it: it interrupts the release (which then records an orphan)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[object] = []

    def hold(signum: int, frame: object) -> None:
        if pending:
            pending.clear()
            raise KeyboardInterrupt
        pending.append(signum)
        log.warning("Ctrl-C: releasing the GPU allocation first; press Ctrl-C again to abandon it")

    try:
        previous = signal.signal(signal.SIGINT, hold)
    except ValueError:  # not the main interpreter
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if pending:
            signal.raise_signal(signal.SIGINT)  # now the program's own handler sees it


class Lease(_LeaseCore["HostedAI"]):
    """GPUs held for the duration of a ``with`` block (sync).

    Made by ``HostedAI.allocate(...)``. Entering waits until the allocation is ready; the
    TTL is renewed in a background thread; leaving the block releases it, however it is left.
    """

    _keepalive: threading.Thread | None = None
    _stop: threading.Event
    _how_to_enter = "with client.allocate(...) as lease:"

    async def __aenter__(self) -> NoReturn:
        raise UsageError(
            "this lease is from the sync client: use `with client.allocate(...)`, "
            "or AsyncHostedAI for `async with`"
        )

    async def __aexit__(self, *_: object) -> None:
        """Never reached: entering with ``async with`` is refused."""

    def __await__(self) -> NoReturn:
        raise UsageError("a lease is not awaited: use `with client.allocate(...) as lease:`")

    _drive = staticmethod(drive)

    _sleep = staticmethod(_sleep_with_client_hook)

    def __enter__(self) -> Self:
        self._check_fresh()
        _open_leases.add(self)
        self._stop = threading.Event()
        try:
            self._acquire_slot()
            self._drive(self._enter_flow(), self._client, self._sleep)
            self._keepalive = threading.Thread(
                target=self._keep_alive, name=f"harpoon-keepalive-{self.id}", daemon=True
            )
            self._keepalive.start()
        except BaseException as exc:
            self._exit_cleanup(exc)
            raise
        return self

    def _keep_alive(self) -> None:
        # Renewals skip the breaker, like releases: an unhealthy-looking host is no reason
        # to let the allocation expire under the user.
        self._drive(self._keepalive_flow(), self._release_client, lambda s: not self._stop.wait(s))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit_cleanup(exc)

    def _exit_cleanup(self, exc: BaseException | None) -> None:
        release_error: AllocationError | None = None
        try:
            with _sigint_deferred():
                if self._keepalive is not None:
                    self._stop.set()
                    # A renewal in flight may finish after the release: it is then refused
                    # (410) and changes nothing, so there is no need to wait long for it.
                    self._keepalive.join(timeout=0.5)
                try:
                    self._drive(self._release_flow(), self._release_client, self._sleep)
                except AllocationError as error:
                    release_error = error
        except BaseException as interrupt:  # SystemExit from a signal handler, say
            self._interrupted(interrupt)
            raise
        finally:
            self._release_slot()
            _open_leases.discard(self)
        self._finish_exit(exc, release_error)

    def _acquire_slot(self) -> None:
        gate = self._client._allocation_gate(self.pool_id)
        if gate is not None and not gate.acquire(timeout=self.capacity_timeout):
            raise AllocationError(
                f"no allocation slot for pool {self.pool_id or '(default)'} within "
                f"{self.capacity_timeout}s (max_allocations_per_pool)"
            )
        self._slot = gate

    # Work on the allocation

    def infer(
        self,
        prompt: str,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
    ) -> InferenceResult:
        """Run one inference on the allocation (see ``HostedAI.infer`` for the options)."""
        work = self._work(
            "infer",
            prompt=prompt,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
        )
        result: InferenceResult = self._drive(work, self._client, self._sleep)
        return result

    def stream(
        self,
        prompt: str,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
    ) -> InferenceStream:
        """Start a streamed inference on the allocation."""
        work = self._work(
            "stream",
            prompt=prompt,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
        )
        stream: InferenceStream = self._drive(work, self._client, self._sleep)
        return stream

    def renew(self, ttl: float | timedelta | None = None) -> Allocation:
        """Renew the TTL now (the lease also does this by itself in the background)."""
        renewed: Allocation = self._drive(
            self._work("renew_allocation", ttl=ttl), self._client, self._sleep
        )
        self.allocation = renewed
        return renewed

    def release(self) -> None:
        """Release the allocation now, before the block ends. Idempotent."""
        if self._keepalive is not None:
            self._stop.set()
        self._drive(self._release_flow(), self._release_client, self._sleep)

    def _release_at_exit(self) -> None:
        if self._keepalive is not None:
            self._stop.set()
        with suppress(AllocationError):  # already logged and kept in client.orphans()
            self._drive(self._release_flow(), self._release_client, self._sleep)


# The async lease ---------------------------------------------------------------------------


async def _run_to_the_end(coro: Coroutine[Any, Any, None], limit: float) -> _Ending:
    """Run ``coro`` to its end, for at most ``limit`` seconds, even if the caller is cancelled
    meanwhile; say what it raised (``None``: nothing) and whether the caller was cancelled."""
    import asyncio  # here, not at the top: sync users should not pay for importing it

    task = asyncio.ensure_future(asyncio.wait_for(coro, limit))
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait((task,))
        except asyncio.CancelledError:
            cancelled = True
    if task.cancelled():  # cancelled from outside, as at event-loop shutdown
        return asyncio.CancelledError("the release was cancelled"), cancelled
    return task.exception(), cancelled


class AsyncLease(_LeaseCore["AsyncHostedAI"]):
    """GPUs held for the duration of an ``async with`` block.

    Made by ``AsyncHostedAI.allocate(...)``. Entering waits until the allocation is ready;
    the TTL is renewed by a background task; leaving the block releases it, however it is
    left, cancellation included.
    """

    _keepalive: asyncio.Task[None] | None = None
    _how_to_enter = "async with client.allocate(...) as lease:"

    def __enter__(self) -> NoReturn:
        raise UsageError(
            "this lease is from the async client: use `async with client.allocate(...)`, "
            "or HostedAI for `with`"
        )

    def __exit__(self, *_: object) -> None:
        """Never reached: entering with ``with`` is refused."""

    def __await__(self) -> NoReturn:
        raise UsageError("a lease is not awaited: use `async with client.allocate(...) as lease:`")

    _drive = staticmethod(adrive)

    async def __aenter__(self) -> Self:
        import asyncio

        self._check_fresh()
        _open_leases.add(self)
        try:
            await self._acquire_slot()
            await self._drive(self._enter_flow(), self._client)
        except BaseException as exc:
            await self._exit_cleanup(exc)
            raise
        self._keepalive = asyncio.create_task(
            self._drive(self._keepalive_flow(), self._release_client, asyncio.sleep),
            name=f"harpoon-keepalive-{self.id}",
        )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self._exit_cleanup(exc)

    async def _exit_cleanup(self, exc: BaseException | None) -> None:
        import asyncio

        try:
            release_error, cancelled = await self._release_to_the_end()
        finally:
            self._release_slot()
            _open_leases.discard(self)
        if cancelled and not isinstance(exc, asyncio.CancelledError):
            # A cancellation arrived while the release ran: deliver it now that it is done.
            interrupted = asyncio.CancelledError()
            if release_error is not None:
                interrupted.add_note(f"hostedai-harpoon: releasing also failed: {release_error}")
            raise interrupted
        self._finish_exit(exc, release_error)

    async def _release_to_the_end(self) -> tuple[AllocationError | None, bool]:
        """Release, bounded by the release timeout and proof against cancellation; return
        the failure (already in ``client.orphans()``) and whether the caller was cancelled.

        The release runs in the caller's task, which costs nothing extra in the common case.
        If a cancellation cuts it short, it starts again in a task the cancellation cannot
        reach: sending the DELETE twice is harmless, the second finds nothing to release.
        """
        import asyncio

        try:
            async with asyncio.timeout(self.release_timeout):
                await self._stop_and_release()
        except asyncio.CancelledError:
            failure, _ = await _run_to_the_end(self._stop_and_release(), self.release_timeout)
            return self._release_failure(failure), True
        except Exception as failure:
            return self._release_failure(failure), False
        return None, False

    def _release_failure(self, failure: BaseException | None) -> AllocationError | None:
        """The release's failure as an ``AllocationError``, recorded as an orphan."""
        if failure is None or isinstance(failure, AllocationError):
            return failure
        import asyncio

        why = (
            "the release was cancelled"
            if isinstance(failure, asyncio.CancelledError)
            else f"the release did not finish within {self.release_timeout}s"
        )
        error = self._orphaned(why)
        error.__cause__ = failure
        return error

    async def _stop_and_release(self) -> None:

        keepalive, self._keepalive = self._keepalive, None
        if keepalive is not None:
            # No need to wait for it to end: a renewal that still lands after the release is
            # refused (410) and, the lease no longer being active, changes nothing.
            keepalive.cancel()
        await self._drive(self._release_flow(), self._release_client)

    async def _acquire_slot(self) -> None:
        import asyncio

        gate = self._client._allocation_gate(self.pool_id)
        if gate is None:
            return
        try:
            # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
            # lands as the slot is granted, and the cancelled task would go on to allocate.
            async with asyncio.timeout(self.capacity_timeout):
                await gate.acquire()
        except TimeoutError:
            raise AllocationError(
                f"no allocation slot for pool {self.pool_id or '(default)'} within "
                f"{self.capacity_timeout}s (max_allocations_per_pool)"
            ) from None
        self._slot = gate

    # Work on the allocation

    async def infer(
        self,
        prompt: str,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
    ) -> InferenceResult:
        """Run one inference on the allocation (see ``AsyncHostedAI.infer`` for options)."""
        work = self._work(
            "infer",
            prompt=prompt,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
        )
        result: InferenceResult = await self._drive(work, self._client)
        return result

    def stream(
        self,
        prompt: str,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
    ) -> AsyncInferenceStream:
        """A streamed inference on the allocation: ``async with lease.stream(...) as chunks``."""
        allocation_id = self._check_usable()
        stream = self._client.stream(
            allocation_id,
            prompt,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
        )
        stream._map_error = self._on_work_error
        return stream

    async def renew(self, ttl: float | timedelta | None = None) -> Allocation:
        """Renew the TTL now (the lease also does this by itself in the background)."""
        renewed: Allocation = await self._drive(
            self._work("renew_allocation", ttl=ttl), self._client
        )
        self.allocation = renewed
        return renewed

    async def release(self) -> None:
        """Release the allocation now, before the block ends. Idempotent."""
        import asyncio

        release_error, cancelled = await self._release_to_the_end()
        if cancelled:
            raise asyncio.CancelledError
        if release_error is not None:
            raise release_error

    def _release_at_exit(self) -> None:
        """No event loop is left at interpreter exit: release over a one-off sync client."""
        from ._client import HostedAI

        if self.allocation is None or self.state in (LeaseState.RELEASED, LeaseState.ORPHANED):
            return
        settings = self._client._settings
        with HostedAI(
            settings.base_url,
            settings.api_key.reveal(),
            allow_insecure_http=True,
            deadline=min(self.release_timeout, 5.0),
            circuit_breaker=None,
        ) as client:
            try:
                client.release_allocation(self.allocation.id)
            except HostedAIError as exc:
                log.warning("could not release allocation %s at exit: %s", self.allocation.id, exc)


# Interpreter exit --------------------------------------------------------------------------

_open_leases: weakref.WeakSet[Lease | AsyncLease] = weakref.WeakSet()


@atexit.register
def _release_open_leases() -> None:
    for lease in list(_open_leases):
        log.warning("releasing allocation of %r at interpreter exit", lease)
        try:
            lease._release_at_exit()
        except Exception as exc:  # best effort: nothing may stop the others
            log.warning("releasing %r at exit failed: %s", lease, exc)
