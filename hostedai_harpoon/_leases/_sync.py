"""``Lease``: the sync twin. Its flows are ``LeaseCore``'s; here only threads and signals."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from contextlib import suppress
from datetime import timedelta
from types import TracebackType
from typing import NoReturn, Self

from .._exceptions import AllocationError, UsageError
from .._http._drivers import SyncDriver
from .._http._sse import InferenceStream
from .._models import Allocation, InferenceResult
from ._core import LeaseCore
from ._release import open_leases, sigint_deferred

__all__ = ["Lease"]


class Lease(LeaseCore[SyncDriver, threading.BoundedSemaphore]):
    """GPUs held for the duration of a ``with`` block (sync).

    Made by ``HostedAI.allocate(...)``. Entering waits until the allocation is ready; the
    TTL is renewed in a background thread; leaving the block releases it, however it is left.

    ``state`` is where the lease is in its life (a ``LeaseState``), ``allocation`` the
    allocation as last seen and ``id`` its id; ``infer``, ``stream`` and ``renew`` work on it.
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

    def __enter__(self) -> Self:
        self._check_fresh()
        open_leases.add(self)
        self._stop = threading.Event()
        try:
            self._acquire_slot()
            self._host.driver.run(self._enter_flow())
            self._keepalive = threading.Thread(
                target=self._keep_alive, name=f"harpoon-keepalive-{self.id}", daemon=True
            )
            self._keepalive.start()
        except BaseException as exc:
            self._exit_cleanup(exc)
            raise
        return self

    def _keep_alive(self) -> None:
        self._host.driver.run(self._keepalive_flow(), lambda s: not self._stop.wait(s))

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
            with sigint_deferred():
                if self._keepalive is not None:
                    self._stop.set()
                    # A renewal in flight may finish after the release: it is then refused
                    # (410) and changes nothing, so there is no need to wait long for it.
                    self._keepalive.join(timeout=0.5)
                try:
                    self._host.driver.run(self._release_flow())
                except AllocationError as error:
                    release_error = error
        except BaseException as interrupt:  # SystemExit from a signal handler, say
            self._interrupted(interrupt)
            raise
        finally:
            self._release_slot()
            open_leases.discard(self)
        self._finish_exit(exc, release_error)

    def _acquire_slot(self) -> None:
        gate = self._host.gate
        if gate is not None and not gate.acquire(timeout=self.capacity_timeout):
            raise AllocationError(
                f"no allocation slot for pool {self.pool_id or '(default)'} within "
                f"{self.capacity_timeout}s (max_allocations_per_pool)"
            )
        self._slot = gate

    # Work on the allocation

    def infer(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Mapping[str, str]] | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
    ) -> InferenceResult:
        """Run one inference on the allocation (see ``HostedAI.infer`` for the options).

        An OpenAI lease (``inference="openai"``) sends ``prompt`` as one user message, or
        the chat ``messages`` given instead; ``model`` defaults to the lease's."""
        planner, call, _ = self._inference(
            False, prompt, messages, model, max_tokens, temperature, stop
        )
        result: InferenceResult = self._host.driver.run(self._work(call, planner))
        return result

    def stream(
        self,
        prompt: str | None = None,
        *,
        messages: Sequence[Mapping[str, str]] | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
    ) -> InferenceStream:
        """A streamed inference on the allocation: ``with lease.stream(...) as chunks``
        (nothing is sent until the stream is entered or iterated)."""
        planner, call, events = self._inference(
            True, prompt, messages, model, max_tokens, temperature, stop
        )
        return InferenceStream(
            lambda: self._host.driver.run(self._work(call, planner)),
            self._host.max_event_bytes,
            events,
        )

    def renew(self, ttl: float | timedelta | None = None) -> Allocation:
        """Renew the TTL now (the lease also does this by itself in the background; a
        ``gpuaas`` lease has no TTL and sends nothing)."""
        self.allocation = self._host.driver.run(self._renew_flow(ttl))
        return self.allocation

    def release(self) -> None:
        """Release the allocation now, before the block ends. Idempotent."""
        if self._keepalive is not None:
            self._stop.set()
        self._host.driver.run(self._release_flow())

    def _release_at_exit(self) -> None:
        if self._keepalive is not None:
            self._stop.set()
        with suppress(AllocationError):  # already logged and kept in client.orphans()
            self._host.driver.run(self._release_flow())
