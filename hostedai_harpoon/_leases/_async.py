"""``AsyncLease``: the async twin. Its flows are ``LeaseCore``'s; here only tasks and the
cancellation-proof release."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, NoReturn, Self

import attrs
import httpx

from .._exceptions import AllocationError, UsageError
from .._http._drivers import AsyncDriver
from .._http._exit import run_at_exit
from .._http._sse import AsyncInferenceStream
from .._http._steps import Flow
from .._models import Allocation, InferenceResult
from ._core import LeaseCore
from ._release import open_leases, run_to_the_end
from ._state import LeaseState

if TYPE_CHECKING:
    import asyncio

__all__ = ["AsyncLease"]

log = logging.getLogger("hostedai_harpoon")

# At interpreter exit no event loop is left: the release gets this long over a sync client.
_AT_EXIT_RELEASE_LIMIT = 5.0


# asyncio is imported where it is used: sync users should not pay for importing it.
class AsyncLease(LeaseCore[AsyncDriver, "asyncio.BoundedSemaphore"]):
    """GPUs held for the duration of an ``async with`` block.

    Made by ``AsyncHostedAI.allocate(...)``. Entering waits until the allocation is ready;
    the TTL is renewed by a background task; leaving the block releases it, however it is
    left, cancellation included.

    ``state`` is where the lease is in its life (a ``LeaseState``), ``allocation`` the
    allocation as last seen and ``id`` its id; ``infer``, ``stream`` and ``renew`` work on it.
    """

    _keepalive: asyncio.Task[None] | None = None
    _how_to_enter = "async with client.allocate(...) as lease:"
    # Called (within the package: the orchestrator's queue) as soon as entering failed,
    # before the clean-up releases what was made: callers waiting on the lease may fail
    # over at once instead of after a patient release.
    on_enter_failed: Callable[[BaseException], None] | None = None

    def __enter__(self) -> NoReturn:
        raise UsageError(
            "this lease is from the async client: use `async with client.allocate(...)`, "
            "or HostedAI for `with`"
        )

    def __exit__(self, *_: object) -> None:
        """Never reached: entering with ``with`` is refused."""

    def __await__(self) -> NoReturn:
        raise UsageError("a lease is not awaited: use `async with client.allocate(...) as lease:`")

    async def __aenter__(self) -> Self:
        import asyncio

        self._check_fresh()
        open_leases.add(self)
        try:
            await self._acquire_slot()
            await self._host.driver.run(self._enter_flow())
        except BaseException as exc:
            if self.on_enter_failed is not None:  # told now, before the clean-up runs
                self.on_enter_failed(exc)
            await self._exit_cleanup(exc)
            raise
        # Real waits, not the clock seam: a test that skips waits must not spin renewals.
        self._keepalive = asyncio.create_task(
            self._host.upkeep_driver.run(self._keepalive_flow(), asyncio.sleep),
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
            open_leases.discard(self)
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
            failure, _ = await run_to_the_end(self._stop_and_release(), self.release_timeout)
            return self._release_failure(failure), True
        except Exception as failure:
            return self._release_failure(failure), False
        return None, False

    def _release_failure(self, failure: BaseException | None) -> AllocationError | None:
        """The release's failure as an ``AllocationError``, recorded as an orphan."""
        import asyncio

        if failure is None or isinstance(failure, AllocationError):
            return failure
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
        await self._host.upkeep_driver.run(self._release_flow())

    async def _acquire_slot(self) -> None:
        import asyncio

        gate = self._host.gate
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
        prompt: str | None = None,
        *,
        messages: Sequence[Mapping[str, str]] | None = None,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
    ) -> InferenceResult:
        """Run one inference on the allocation (see ``AsyncHostedAI.infer`` for options).

        An OpenAI lease (``inference="openai"``) sends ``prompt`` as one user message, or
        the chat ``messages`` given instead; ``model`` defaults to the lease's."""
        planner, call, _ = self._inference(
            False, prompt, messages, model, max_tokens, temperature, stop
        )
        result: InferenceResult = await self._host.driver.run(self._work(call, planner))
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
    ) -> AsyncInferenceStream:
        """A streamed inference on the allocation: ``async with lease.stream(...) as chunks``."""
        planner, call, events = self._inference(
            True, prompt, messages, model, max_tokens, temperature, stop
        )
        return AsyncInferenceStream(
            lambda: self._host.driver.run(self._work(call, planner)),
            self._host.max_event_bytes,
            events,
        )

    async def renew(self, ttl: float | timedelta | None = None) -> Allocation:
        """Renew the TTL now (the lease also does this by itself in the background; a
        ``gpuaas`` lease has no TTL and sends nothing)."""
        self.allocation = await self._host.driver.run(self._renew_flow(ttl))
        return self.allocation

    async def release(self) -> None:
        """Release the allocation now, before the block ends. Idempotent; ``aclose()`` and
        ``close()`` are the same method."""
        import asyncio

        release_error, cancelled = await self._release_to_the_end()
        if cancelled:
            raise asyncio.CancelledError
        if release_error is not None:
            raise release_error

    aclose = close = release

    def _release_at_exit(self) -> None:
        """No event loop is left at interpreter exit: the same release flow, over the user's
        http_client's own settings (TLS, proxies, mounts, headers; ``_http/_exit.py``)."""
        if self.state in (LeaseState.RELEASED, LeaseState.ORPHANED):
            return

        def release(build_request: Callable[..., httpx.Request]) -> Flow[None]:
            self._release_planner = attrs.evolve(
                self._release_planner,
                build_request=build_request,
                deadline=min(self.release_timeout, _AT_EXIT_RELEASE_LIMIT),
            )
            return self._release_flow()

        try:
            run_at_exit(self._host.driver.http, self._host.max_event_bytes, release)
        except AllocationError as exc:  # already kept in client.orphans()
            log.warning("could not release %s %s at exit: %s", self._kind, self._known_id(), exc)
