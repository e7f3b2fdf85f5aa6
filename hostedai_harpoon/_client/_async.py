"""``AsyncHostedAI``: the async client. Signatures, docstrings and I/O; every decision is shared."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import TYPE_CHECKING, Literal, Self, TypeVar

import httpx

from .._config import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    NOT_GIVEN,
    DefaultHeaders,
    NotGiven,
    Secret,
)
from .._exceptions import ConfigurationError, UsageError
from .._http import _api as api
from .._http._drivers import AsyncDriver
from .._http._openai import Inference
from .._http._sse import AsyncInferenceStream
from .._http._steps import Call
from .._leases import (
    DEFAULT_CAPACITY_TIMEOUT,
    DEFAULT_LEASE_TTL,
    DEFAULT_READY_TIMEOUT,
    DEFAULT_RELEASE_TIMEOUT,
    AsyncLease,
    OrphanedAllocation,
    release_orphans_flow,
)
from .._leases._release import for_release
from .._models import Allocation, Health, InferenceResult, Pool
from .._resilience import CircuitBreakerConfig, RetryPolicy
from ._base import BaseClient

if TYPE_CHECKING:
    import asyncio

__all__ = ["AsyncHostedAI"]

T = TypeVar("T")
Timeout = float | httpx.Timeout | NotGiven | None


# asyncio is imported where it is used: sync users should not pay for importing it.
class AsyncHostedAI(BaseClient[httpx.AsyncClient, AsyncDriver, "asyncio.BoundedSemaphore"]):
    """The asyncio HostedAI client: the same arguments (and ranges) and the same calls as
    ``HostedAI``, the calls awaited."""

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        pool_id: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        deadline: float | None = None,
        retry: RetryPolicy | None = None,
        circuit_breaker: CircuitBreakerConfig | NotGiven | None = NOT_GIVEN,
        http_client: httpx.AsyncClient | None = None,
        allow_insecure_http: bool = False,
        default_headers: Mapping[str, str] | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_allocations_per_pool: int | None = None,
        dialect: Literal["v1", "gpuaas"] | None = None,
        team_id: str | None = None,
        auth_header: str | None = None,
        ledger_dir: str | os.PathLike[str] | None = None,
        subscribe_options: Mapping[str, object] | None = None,
    ) -> None:
        key = Secret.of(api_key, "api_key")
        del api_key  # only in the Secret from here on: no frame that can raise holds it
        headers = DefaultHeaders.of(default_headers)
        del default_headers  # the same: one of them may carry a key
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise ConfigurationError("http_client must be an httpx.AsyncClient for AsyncHostedAI")
        super().__init__(
            base_url,
            key,
            pool_id,
            timeout=timeout,
            max_retries=max_retries,
            deadline=deadline,
            retry=retry,
            circuit_breaker=circuit_breaker,
            allow_insecure_http=allow_insecure_http,
            default_headers=headers,
            max_response_bytes=max_response_bytes,
            max_allocations_per_pool=max_allocations_per_pool,
            dialect=dialect,
            team_id=team_id,
            auth_header=auth_header,
            ledger_dir=ledger_dir,
            subscribe_options=subscribe_options,
        )
        http = http_client or httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        self._attach(http, owned=http_client is None)
        self._driver = AsyncDriver(http, self._max_response_bytes)
        if http_client is None:
            # Renewals and releases get connections of their own: however much new work
            # fills the main pool (a burst of calls, a full pool's queue), a lease's TTL is
            # renewed and a GPU given back without waiting for a connection. (With your own
            # http_client they share it: give it room, or a second client, as you see fit.)
            upkeep = httpx.AsyncClient(
                timeout=self.timeout,
                follow_redirects=False,
                limits=httpx.Limits(max_connections=16, max_keepalive_connections=4),
            )
            self._upkeep_driver = AsyncDriver(upkeep, self._max_response_bytes)

    async def _run(self, call: Call[T], timeout: Timeout = NOT_GIVEN) -> T:
        return await self._driver.run(self._planner.plan(self._timed(call, timeout)))

    def _new_gate(self, size: int) -> asyncio.BoundedSemaphore:
        import asyncio

        return asyncio.BoundedSemaphore(size)

    # Lifecycle

    async def aclose(self) -> None:
        """Close the connection pool (unless it was passed in as ``http_client``).
        ``close()`` is the same method."""
        if self._owns_http:
            await self._http.aclose()
            if self._upkeep_driver is not None:
                await self._upkeep_driver.http.aclose()

    close = aclose

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    def __enter__(self) -> Self:
        raise UsageError(
            "AsyncHostedAI is the async client: use `async with AsyncHostedAI(...)`, "
            "or HostedAI for `with`"
        )

    def __exit__(self, *_: object) -> None:
        """Never reached: entering with ``with`` is refused."""

    # GPU leases

    def allocate(
        self,
        model: str,
        gpus: int = 1,
        gpu_type: str | None = None,
        pool_id: str | None = None,
        *,
        ttl: float | timedelta | None = DEFAULT_LEASE_TTL,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
        capacity_timeout: float = DEFAULT_CAPACITY_TIMEOUT,
        release_timeout: float = DEFAULT_RELEASE_TIMEOUT,
        renew_interval: float | None = None,
        idempotency_key: str | None = None,
        inference: Inference | None = None,
        max_lifetime: float | None = None,
    ) -> AsyncLease:
        """GPUs for the length of a block: ``async with client.allocate(model=...) as lease:``.

        Entering waits until the allocation is ready (waiting up to ``capacity_timeout`` for
        a full pool); the TTL is renewed in the background every ``renew_interval`` seconds
        (default: a third of the TTL); leaving the block releases it, however it is left.
        ``gpus`` is an integer from 1 to 64, ``ttl`` seconds from 1 to 86,400 (or a
        ``timedelta``), the timeouts seconds from 0 (``release_timeout``: above 0) to a week.

        ``inference`` says how the lease's model is reached: ``"hostedai"`` (the API's
        ``POST /v1/inference``), ``"openai"`` (chat completions at the allocation's
        ``endpoint``, as vLLM serves them) or ``"openai-completions"`` (plain completions
        there); ``None``, the dialect's own: ``"hostedai"`` on ``v1``, ``"openai"`` on
        ``gpuaas`` (the pod's vLLM server). An OpenAI lease whose allocation has no usable
        endpoint fails on entering with an ``AllocationError`` (and is released).
        """
        return self._new_lease(
            AsyncLease, model, gpus, gpu_type, pool_id, ttl, ready_timeout, capacity_timeout,
            release_timeout, renew_interval, idempotency_key, inference, max_lifetime,
        )  # fmt: skip

    async def release_orphans(self) -> list[OrphanedAllocation]:
        """Try again to release every orphan; return those that are still held."""
        flow = release_orphans_flow(
            self._orphans, self._planner, DEFAULT_RELEASE_TIMEOUT, self._gpuaas
        )
        return await self._driver.run(flow)

    async def reconcile(self) -> list[str]:
        """Release what this client's ledger owns that no live lease holds, and return the
        ids released. On ``gpuaas`` (no server TTL reclaims a subscription): this team's
        subscriptions made by this client's ledger (a JSON file under ``ledger_dir``, shared
        by its processes) whose process is gone or is this one. On ``v1``: the orphans."""
        if self._gpuaas is None:
            before = {orphan.allocation_id for orphan in self._orphans.snapshot()}
            still = {orphan.allocation_id for orphan in await self.release_orphans()}
            return sorted(i for i in before - still if i is not None)
        patient = for_release(self._planner, DEFAULT_RELEASE_TIMEOUT)
        return await self._driver.run(self._gpuaas.reconcile(patient))

    # The API

    async def create_allocation(
        self,
        model: str,
        gpus: int = 1,
        gpu_type: str | None = None,
        pool_id: str | None = None,
        ttl: float | timedelta | None = None,
        idempotency_key: str | None = None,
        *,
        timeout: Timeout = NOT_GIVEN,
    ) -> Allocation:
        """Allocate ``gpus`` GPUs (1 to 64) for ``model``. Safe to retry: every attempt of
        one call carries the same ``Idempotency-Key``, so it creates at most one allocation."""
        plane = self._gpuaas
        if plane is not None:
            return await self._driver.run(
                self._subscribe(
                    plane, timeout, model, gpus, gpu_type, pool_id, ttl, idempotency_key
                )
            )

        pool = self._pool(pool_id)
        return await self._run(
            api.create_allocation(model, gpus, gpu_type, pool, ttl, idempotency_key), timeout
        )

    async def get_allocation(
        self, allocation_id: str, *, timeout: Timeout = NOT_GIVEN
    ) -> Allocation:
        """The allocation as the server sees it now."""
        plane = self._gpuaas
        if plane is not None:
            return await self._driver.run(
                plane.get_allocation(self._planner_for(timeout), allocation_id)
            )
        return await self._run(api.get_allocation(allocation_id), timeout)

    async def list_allocations(
        self, pool_id: str | None = None, *, timeout: Timeout = NOT_GIVEN
    ) -> list[Allocation]:
        """The live allocations, optionally of one pool."""
        plane = self._gpuaas
        if plane is not None:
            return await self._driver.run(
                plane.list_allocations(self._planner_for(timeout), pool_id)
            )
        return await self._run(api.list_allocations(pool_id), timeout)

    async def renew_allocation(
        self,
        allocation_id: str,
        ttl: float | timedelta | None = None,
        *,
        timeout: Timeout = NOT_GIVEN,
    ) -> Allocation:
        """Push the allocation's expiry ``ttl`` seconds (default: its own TTL) from now."""
        plane = self._gpuaas
        if plane is not None:
            return await self._driver.run(
                plane.get_allocation(self._planner_for(timeout), allocation_id)
            )
        return await self._run(api.renew_allocation(allocation_id, ttl), timeout)

    async def release_allocation(self, allocation_id: str, *, timeout: Timeout = NOT_GIVEN) -> None:
        """Release the allocation. Idempotent: an unknown or already released one is fine."""
        plane = self._gpuaas
        if plane is not None:
            await self._driver.run(plane.release_by_id(self._planner_for(timeout), allocation_id))
            return

        await self._run(api.release_allocation(allocation_id), timeout)

    async def infer(
        self,
        allocation_id: str,
        prompt: str,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> InferenceResult:
        """Run one inference on the allocation."""
        self._not_on_gpuaas("infer")

        call = api.infer(allocation_id, prompt, model, max_tokens, temperature, stop)
        return await self._run(call, timeout)

    def stream(
        self,
        allocation_id: str,
        prompt: str,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
        timeout: Timeout = NOT_GIVEN,
    ) -> AsyncInferenceStream:
        """A streamed inference: ``async with client.stream(...) as chunks: async for ...``
        (or ``await`` it to send the request at once)."""
        self._not_on_gpuaas("stream")

        call = api.stream(allocation_id, prompt, model, max_tokens, temperature, stop)
        timed = self._timed(call, timeout)  # a bad timeout is refused now, not on entering
        return AsyncInferenceStream(lambda: self._run(timed), self._max_response_bytes)

    async def list_pools(self, *, timeout: Timeout = NOT_GIVEN) -> list[Pool]:
        """The pools this key can use, the default pool first."""
        plane = self._gpuaas
        if plane is not None:
            return await self._driver.run(plane.list_pools(self._planner_for(timeout)))
        return await self._run(api.list_pools(), timeout)

    async def get_pool(self, pool_id: str, *, timeout: Timeout = NOT_GIVEN) -> Pool:
        """One pool, with its free capacity now."""
        plane = self._gpuaas
        if plane is not None:
            return await self._driver.run(plane.get_pool(self._planner_for(timeout), pool_id))
        return await self._run(api.get_pool(pool_id), timeout)

    async def health(self, *, timeout: Timeout = NOT_GIVEN) -> Health:
        """The service's health."""
        plane = self._gpuaas
        if plane is not None:
            return await self._driver.run(plane.health(self._planner_for(timeout)))
        return await self._run(api.health(), timeout)
