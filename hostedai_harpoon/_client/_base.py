"""``BaseClient``: what both clients share. Settings and their checks, ``with_options``,
the planner every call goes through, and the host side of leases. The twins add the I/O."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Generic, Self, TypeVar

import attrs
import httpx

from .._checks import (
    check_gpus,
    check_id,
    check_idempotency_key,
    check_optional_text,
    check_retries,
    check_seconds,
    check_text,
    ttl_seconds,
)
from .._config import (
    DEFAULT_MAX_RETRIES,
    NOT_GIVEN,
    DefaultHeaders,
    NotGiven,
    Secret,
    Settings,
    resolve_dialect,
    resolve_settings,
)
from .._exceptions import ConfigurationError, UsageError
from .._http._plan import Planner
from .._http._steps import Call, Flow
from .._leases import LeaseHost, OrphanedAllocation, OrphanLedger
from .._leases._core import LeaseCore
from .._leases._gpuaas import GpuaasPlane, SubscriptionLedger
from .._models import Allocation
from .._resilience import CircuitBreaker, CircuitBreakerConfig, RetryPolicy
from .._version import __version__

__all__ = [
    "USER_AGENT",
    "BaseClient",
    "check_deadline",
    "check_retry",
    "pick_timeout",
    "positive_int",
    "split_headers",
]

T = TypeVar("T")
HttpT = TypeVar("HttpT", httpx.Client, httpx.AsyncClient)
DriverT = TypeVar("DriverT")
GateT = TypeVar("GateT")
LeaseT = TypeVar("LeaseT", bound=LeaseCore[Any, Any])

USER_AGENT = f"hostedai-harpoon/{__version__} python-httpx/{httpx.__version__}"


def _retry_policy(policy: RetryPolicy, max_retries: int) -> RetryPolicy:
    return attrs.evolve(policy, max_retries=check_retries(max_retries))


def check_retry(retry: RetryPolicy | None, max_retries: int) -> RetryPolicy:
    """``max_retries`` is a shorthand for ``retry=RetryPolicy(max_retries=...)``; a policy
    given in full wins over the default ``max_retries``, and a different explicit count
    alongside it is refused rather than silently preferred."""
    if retry is None:
        return _retry_policy(RetryPolicy(), max_retries)
    if not isinstance(retry, RetryPolicy):
        raise ConfigurationError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
    if check_retries(max_retries) not in (DEFAULT_MAX_RETRIES, retry.max_retries):
        raise ConfigurationError(
            f"max_retries={max_retries!r} contradicts retry=RetryPolicy(max_retries="
            f"{retry.max_retries}); pass only one of them"
        )
    return retry


def pick_timeout(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    """A timeout argument as an ``httpx.Timeout``: more than 0 and at most a week of
    seconds, or an ``httpx.Timeout`` (``None``: no timeout)."""
    if isinstance(timeout, httpx.Timeout):
        return timeout
    if timeout is not None:
        check_seconds(timeout, "timeout", positive=True)
    return httpx.Timeout(timeout)


def check_deadline(deadline: float | None) -> float | None:
    if deadline is not None:
        check_seconds(deadline, "deadline", positive=True)
    return deadline


def split_headers(
    default_headers: DefaultHeaders, key: Secret | None
) -> tuple[dict[str, str], dict[str, Secret]]:
    """The headers of every request: the SDK's own and the user's to send as they are, and
    the user's secret ones. The key itself is in neither: the planner sets it on each
    request as it is built, so no dict a frame holds while something can fail carries it."""
    plain, secret = default_headers.split(key)
    return {"accept": "application/json", "user-agent": USER_AGENT, **plain}, secret


def positive_int(value: object, name: str, *, optional: bool = False) -> Any:
    if optional and value is None:
        return None
    if type(value) is not int or value < 1:
        extra = " or None" if optional else ""
        raise ConfigurationError(f"{name} must be a positive integer{extra}, got {value!r}")
    return value


class BaseClient(Generic[HttpT, DriverT, GateT]):
    """Configuration, the planner of every call and the host side of leases, for both
    clients; the twins set ``_http`` and ``_driver`` and do the I/O."""

    _http: HttpT
    _driver: DriverT
    _owns_http: bool

    def __init__(
        self,
        base_url: str | None,
        api_key: Secret | None,
        pool_id: str | None,
        *,
        timeout: float | httpx.Timeout | None,
        max_retries: int,
        deadline: float | None,
        retry: RetryPolicy | None,
        circuit_breaker: CircuitBreakerConfig | NotGiven | None,
        allow_insecure_http: bool,
        default_headers: DefaultHeaders,
        max_response_bytes: int,
        max_allocations_per_pool: int | None,
        dialect: str | None = None,
        team_id: str | None = None,
        auth_header: str | None = None,
        ledger_dir: str | os.PathLike[str] | None = None,
        subscribe_options: Mapping[str, object] | None = None,
    ) -> None:
        settings = resolve_settings(
            base_url, api_key, pool_id, allow_insecure_http=allow_insecure_http
        )
        dialect_settings = resolve_dialect(
            dialect, team_id, auth_header, ledger_dir, subscribe_options
        )
        if dialect_settings.dialect == "gpuaas":
            settings = attrs.evolve(settings, base_url=settings.base_url.removesuffix("/api"))
        check_optional_text(settings.pool_id, "pool_id")
        self._settings: Settings = settings
        self._allow_insecure_http = allow_insecure_http is True
        breaker_config = (
            CircuitBreakerConfig() if isinstance(circuit_breaker, NotGiven) else circuit_breaker
        )
        if breaker_config is not None and not isinstance(breaker_config, CircuitBreakerConfig):
            raise ConfigurationError(
                "circuit_breaker must be a CircuitBreakerConfig or None, "
                f"got {type(circuit_breaker).__name__}"
            )
        host = httpx.URL(settings.base_url).netloc.decode("ascii")
        self._max_response_bytes: int = positive_int(max_response_bytes, "max_response_bytes")
        self._max_allocations_per_pool: int | None = positive_int(
            max_allocations_per_pool, "max_allocations_per_pool", optional=True
        )
        headers, secret_headers = split_headers(default_headers, settings.api_key)
        self._planner = Planner(
            build_request=None,  # the twin's http client, once it has one (_attach)
            prefix=settings.base_url,
            headers=headers,
            secret=settings.api_key,
            secret_headers=secret_headers,
            timeout=pick_timeout(timeout),
            deadline=check_deadline(deadline),
            retry=check_retry(retry, max_retries),
            breaker=None if breaker_config is None else CircuitBreaker(breaker_config, name=host),
            auth_header=dialect_settings.auth_header,
        )
        self._dialect = dialect_settings.dialect
        self._gpuaas: GpuaasPlane | None = None
        if dialect_settings.team_id is not None:
            ledger = SubscriptionLedger(
                dialect_settings.ledger_dir, settings.base_url, dialect_settings.team_id
            )
            self._gpuaas = GpuaasPlane(
                dialect_settings.team_id, ledger, dict(dialect_settings.subscribe_options)
            )
        # Shared with every with_options() copy, like the connection pool and the breaker.
        self._gates: dict[str | None, GateT] = {}
        self._orphans = OrphanLedger()
        self._upkeep_driver: DriverT | None = None  # renewals' and releases' own pool

    def _attach(self, http: HttpT, owned: bool) -> None:
        self._http = http
        self._owns_http = owned
        self._planner = attrs.evolve(self._planner, build_request=http.build_request)

    # Public configuration ------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The API's base URL, without a trailing slash."""
        return self._settings.base_url

    @property
    def dialect(self) -> str:
        """The control plane's API: ``"v1"`` or ``"gpuaas"`` (hosted·ai's platform)."""
        return self._dialect

    @property
    def inference(self) -> str:
        """How a lease's model is reached when ``allocate`` is not told: ``"hostedai"`` (the
        v1 API's ``/v1/inference``) on ``v1``, ``"openai"`` (the pod's vLLM server) on
        ``gpuaas``."""
        return "hostedai" if self._gpuaas is None else "openai"

    @property
    def team_id(self) -> str | None:
        """The team a ``gpuaas`` client acts for (``None`` on ``v1``)."""
        return None if self._gpuaas is None else self._gpuaas.team_id

    @property
    def pool_id(self) -> str | None:
        """The pool allocations go to when a call names none (``None``: the server's default)."""
        return self._settings.pool_id

    @property
    def timeout(self) -> httpx.Timeout:
        """The timeout of each attempt."""
        return self._planner.timeout

    @property
    def deadline(self) -> float | None:
        """The most seconds one call may take over all its attempts, reading the answer
        included (``None``: no limit)."""
        return self._planner.deadline

    @property
    def retry_policy(self) -> RetryPolicy:
        """How failed attempts are retried."""
        return self._planner.retry

    @property
    def max_retries(self) -> int:
        """How many times a failed attempt may be retried."""
        return self._planner.retry.max_retries

    @property
    def circuit_breaker(self) -> CircuitBreaker | None:
        """The breaker guarding this client's host, or ``None`` when breakers are disabled."""
        return self._planner.breaker

    def __repr__(self) -> str:
        if "_planner" not in self.__dict__:  # seen half-made, by a reporter of a failure in it
            return f"<{type(self).__name__} (not configured)>"
        return (
            f"<{type(self).__name__} base_url={self.base_url!r} pool_id={self.pool_id!r} "
            f"max_retries={self.max_retries}"
            + ("" if self._gpuaas is None else f" dialect='gpuaas' team_id={self.team_id!r}")
            + ">"
        )

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError(f"{type(self).__name__} cannot be pickled: it holds the API key")

    def __copy__(self) -> Self:
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone

    def with_options(
        self,
        *,
        pool_id: str | NotGiven | None = NOT_GIVEN,
        timeout: float | httpx.Timeout | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        deadline: float | NotGiven | None = NOT_GIVEN,
        retry: RetryPolicy | NotGiven = NOT_GIVEN,
    ) -> Self:
        """A copy with some settings changed that shares this client's connection pool and
        circuit breakers. Closing the copy leaves the connections open."""
        clone = self.__copy__()
        clone._owns_http = False
        planner = self._planner
        if not isinstance(pool_id, NotGiven):
            check_optional_text(pool_id, "pool_id")
            clone._settings = attrs.evolve(self._settings, pool_id=pool_id)
        if not isinstance(timeout, NotGiven):
            planner = attrs.evolve(planner, timeout=pick_timeout(timeout))
        if not isinstance(deadline, NotGiven):
            planner = attrs.evolve(planner, deadline=check_deadline(deadline))
        if not isinstance(retry, NotGiven):
            if not isinstance(retry, RetryPolicy):
                raise ConfigurationError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
            count = retry.max_retries if isinstance(max_retries, NotGiven) else max_retries
            planner = attrs.evolve(planner, retry=check_retry(retry, count))
        elif not isinstance(max_retries, NotGiven):
            planner = attrs.evolve(planner, retry=_retry_policy(planner.retry, max_retries))
        clone._planner = planner
        return clone

    def orphans(self) -> list[OrphanedAllocation]:
        """Allocations this client could not release (they may still be billing)."""
        return self._orphans.snapshot()

    # Calls and leases ----------------------------------------------------------------------

    @staticmethod
    def _timed(call: Call[T], timeout: float | httpx.Timeout | NotGiven | None) -> Call[T]:
        """``call`` with its own per-attempt timeout, when one was given."""
        if not isinstance(timeout, NotGiven):
            call.timeout = pick_timeout(timeout)
        return call

    def _planner_for(self, timeout: float | httpx.Timeout | NotGiven | None) -> Planner:
        """The planner of a call made of several (a ``gpuaas`` operation), with its timeout."""
        if isinstance(timeout, NotGiven):
            return self._planner
        return attrs.evolve(self._planner, timeout=pick_timeout(timeout))

    def _subscribe(
        self,
        plane: GpuaasPlane,
        timeout: float | httpx.Timeout | NotGiven | None,
        model: str,
        gpus: int,
        gpu_type: str | None,
        pool_id: str | None,
        ttl: float | timedelta | None,
        idempotency_key: str | None,
    ) -> Flow[Allocation]:
        """``create_allocation`` on the platform: every argument checked as on v1 (and as a
        lease checks them) before anything is sent, even the pools listed to choose one;
        ``gpu_type``, ``ttl`` and ``idempotency_key`` mean nothing to a subscribe."""
        check_text(model, "model")
        check_gpus(gpus)
        check_optional_text(gpu_type, "gpu_type")
        if pool_id is not None:
            check_id(pool_id, "pool_id")
        ttl_seconds(ttl)
        check_idempotency_key(idempotency_key)
        planner = self._planner_for(timeout)
        return plane.create_allocation(planner, self._pool(pool_id), gpus, model)

    def _not_on_gpuaas(self, name: str) -> None:
        if self._gpuaas is not None:
            raise UsageError(
                f"client.{name}(allocation_id, ...) is the v1 API's; on the gpuaas dialect "
                "the model is served by the pod: use client.allocate(..., inference='openai')"
            )

    def _pool(self, pool_id: str | None) -> str | None:
        return pool_id if pool_id is not None else self._settings.pool_id

    def _new_gate(self, size: int) -> GateT:
        raise NotImplementedError

    def _lease_host(self, pool_id: str | None) -> LeaseHost[DriverT, Any]:
        """What a lease on ``pool_id`` needs from this client."""
        pool = self._pool(check_optional_text(pool_id, "pool_id"))
        gate: GateT | None = None
        if self._max_allocations_per_pool is not None:
            gate = self._gates.get(pool)
            if gate is None:
                gate = self._gates.setdefault(pool, self._new_gate(self._max_allocations_per_pool))
        return LeaseHost(
            planner=self._planner,
            driver=self._driver,
            ledger=self._orphans,
            gate=gate,
            pool_id=self.pool_id,
            max_event_bytes=self._max_response_bytes,
            allow_insecure_http=self._allow_insecure_http,
            upkeep=self._upkeep_driver,
            gpuaas=self._gpuaas,
        )

    def _new_lease(
        self,
        lease_class: type[LeaseT],
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
        inference: str | None,
        max_lifetime: float | None = None,
    ) -> LeaseT:
        return lease_class(
            self._lease_host(pool_id),
            model=model,
            gpus=gpus,
            gpu_type=gpu_type,
            pool_id=pool_id,
            ttl=ttl,
            ready_timeout=ready_timeout,
            capacity_timeout=capacity_timeout,
            release_timeout=release_timeout,
            renew_interval=renew_interval,
            idempotency_key=idempotency_key,
            inference=self.inference if inference is None else inference,
            max_lifetime=max_lifetime,
        )
