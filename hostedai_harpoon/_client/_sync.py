"""``HostedAI``: the sync client. Signatures, docstrings and I/O; every decision is shared."""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from datetime import timedelta
from types import TracebackType
from typing import Literal, Self, TypeVar

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
from .._http._drivers import SyncDriver
from .._http._openai import Inference
from .._http._sse import InferenceStream
from .._http._steps import Call
from .._leases import (
    DEFAULT_CAPACITY_TIMEOUT,
    DEFAULT_LEASE_TTL,
    DEFAULT_READY_TIMEOUT,
    DEFAULT_RELEASE_TIMEOUT,
    Lease,
    OrphanedAllocation,
    release_orphans_flow,
)
from .._leases._release import for_release
from .._models import Allocation, Health, InferenceResult, Pool
from .._resilience import CircuitBreakerConfig, RetryPolicy
from ._base import BaseClient

__all__ = ["HostedAI"]

T = TypeVar("T")
Timeout = float | httpx.Timeout | NotGiven | None


class HostedAI(BaseClient[httpx.Client, SyncDriver, threading.BoundedSemaphore]):
    """The synchronous HostedAI client.

    Arguments left out come from ``HOSTED_AI_BASE_URL``, ``HOSTED_AI_API_KEY`` and
    ``HOSTED_AI_POOL_ID``. ``timeout`` bounds each attempt; ``deadline`` (seconds) bounds a
    whole call across its retries. ``http_client`` is used as given and not closed by us.
    Every call also takes its own ``timeout=``, for that call's attempts.

    Ranges: ``base_url``, ``api_key`` and ``pool_id`` are non-blank strings (``None``: from
    the environment); ``timeout`` and ``deadline`` are seconds above 0 and at most a week
    (or ``None``; ``timeout`` may be an ``httpx.Timeout``); ``max_retries`` is an integer
    from 0 to 100; ``allow_insecure_http`` is ``True`` or ``False``; ``max_response_bytes``
    and ``max_allocations_per_pool`` are integers >= 1. Anything else is a
    ``ConfigurationError`` naming the argument.
    """

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
        http_client: httpx.Client | None = None,
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
        if http_client is not None and not isinstance(http_client, httpx.Client):
            raise ConfigurationError("http_client must be an httpx.Client for HostedAI")
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
        http = http_client or httpx.Client(timeout=self.timeout, follow_redirects=False)
        self._attach(http, owned=http_client is None)
        self._driver = SyncDriver(http, self._max_response_bytes)

    def _run(self, call: Call[T], timeout: Timeout = NOT_GIVEN) -> T:
        return self._driver.run(self._planner.plan(self._timed(call, timeout)))

    def _new_gate(self, size: int) -> threading.BoundedSemaphore:
        return threading.BoundedSemaphore(size)

    # Lifecycle

    def close(self) -> None:
        """Close the connection pool (unless it was passed in as ``http_client``)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        raise UsageError(
            "HostedAI is the sync client: use `with HostedAI(...)`, "
            "or AsyncHostedAI for `async with`"
        )

    async def __aexit__(self, *_: object) -> None:
        """Never reached: entering with ``async with`` is refused."""

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
    ) -> Lease:
        """GPUs for the length of a block: ``with client.allocate(model=...) as lease:``.

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
            Lease, model, gpus, gpu_type, pool_id, ttl, ready_timeout, capacity_timeout,
            release_timeout, renew_interval, idempotency_key, inference, max_lifetime,
        )  # fmt: skip

    def release_orphans(self) -> list[OrphanedAllocation]:
        """Try again to release every orphan; return those that are still held."""
        flow = release_orphans_flow(
            self._orphans, self._planner, DEFAULT_RELEASE_TIMEOUT, self._gpuaas
        )
        return self._driver.run(flow)

    def reconcile(self) -> list[str]:
        """Release what this client's ledger owns that no live lease holds, and return the
        ids released. On ``gpuaas`` (no server TTL reclaims a subscription): this team's
        subscriptions made by this client's ledger (a JSON file under ``ledger_dir``, shared
        by its processes) whose process is gone or is this one. On ``v1``: the orphans."""
        if self._gpuaas is None:
            before = {orphan.allocation_id for orphan in self._orphans.snapshot()}
            still = {orphan.allocation_id for orphan in self.release_orphans()}
            return sorted(i for i in before - still if i is not None)
        patient = for_release(self._planner, DEFAULT_RELEASE_TIMEOUT)
        return self._driver.run(self._gpuaas.reconcile(patient))

    # The API

    def create_allocation(
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
            return self._driver.run(
                self._subscribe(
                    plane, timeout, model, gpus, gpu_type, pool_id, ttl, idempotency_key
                )
            )

        pool = self._pool(pool_id)
        return self._run(
            api.create_allocation(model, gpus, gpu_type, pool, ttl, idempotency_key), timeout
        )

    def get_allocation(self, allocation_id: str, *, timeout: Timeout = NOT_GIVEN) -> Allocation:
        """The allocation as the server sees it now."""
        plane = self._gpuaas
        if plane is not None:
            return self._driver.run(plane.get_allocation(self._planner_for(timeout), allocation_id))
        return self._run(api.get_allocation(allocation_id), timeout)

    def list_allocations(
        self, pool_id: str | None = None, *, timeout: Timeout = NOT_GIVEN
    ) -> list[Allocation]:
        """The live allocations, optionally of one pool."""
        plane = self._gpuaas
        if plane is not None:
            return self._driver.run(plane.list_allocations(self._planner_for(timeout), pool_id))
        return self._run(api.list_allocations(pool_id), timeout)

    def renew_allocation(
        self,
        allocation_id: str,
        ttl: float | timedelta | None = None,
        *,
        timeout: Timeout = NOT_GIVEN,
    ) -> Allocation:
        """Push the allocation's expiry ``ttl`` seconds (default: its own TTL) from now."""
        plane = self._gpuaas
        if plane is not None:
            return self._driver.run(plane.get_allocation(self._planner_for(timeout), allocation_id))
        return self._run(api.renew_allocation(allocation_id, ttl), timeout)

    def release_allocation(self, allocation_id: str, *, timeout: Timeout = NOT_GIVEN) -> None:
        """Release the allocation. Idempotent: an unknown or already released one is fine."""
        plane = self._gpuaas
        if plane is not None:
            self._driver.run(plane.release_by_id(self._planner_for(timeout), allocation_id))
            return

        self._run(api.release_allocation(allocation_id), timeout)

    def infer(
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
        return self._run(call, timeout)

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
    ) -> InferenceStream:
        """A streamed inference: ``with client.stream(...) as chunks: for chunk in chunks``
        (or iterate it at once). Nothing is sent until then, as with httpx's ``stream()``."""
        self._not_on_gpuaas("stream")

        call = api.stream(allocation_id, prompt, model, max_tokens, temperature, stop)
        timed = self._timed(call, timeout)  # a bad timeout is refused now, not on entering
        return InferenceStream(lambda: self._run(timed), self._max_response_bytes)

    def list_pools(self, *, timeout: Timeout = NOT_GIVEN) -> list[Pool]:
        """The pools this key can use, the default pool first."""
        plane = self._gpuaas
        if plane is not None:
            return self._driver.run(plane.list_pools(self._planner_for(timeout)))
        return self._run(api.list_pools(), timeout)

    def get_pool(self, pool_id: str, *, timeout: Timeout = NOT_GIVEN) -> Pool:
        """One pool, with its free capacity now."""
        plane = self._gpuaas
        if plane is not None:
            return self._driver.run(plane.get_pool(self._planner_for(timeout), pool_id))
        return self._run(api.get_pool(pool_id), timeout)

    def health(self, *, timeout: Timeout = NOT_GIVEN) -> Health:
        """The service's health."""
        plane = self._gpuaas
        if plane is not None:
            return self._driver.run(plane.health(self._planner_for(timeout)))
        return self._run(api.health(), timeout)
