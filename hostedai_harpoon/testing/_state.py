"""Pools and allocations: the emulated server's state and its lifecycle rules (no I/O, no lock)."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping, Sequence

import attrs

from .._models import AllocationStatus
from ._clock import format_timestamp
from ._wire import WireError, check_delay

__all__ = [
    "DEFAULT_MODELS",
    "AllocationRecord",
    "AllocationRequest",
    "AllocationStatus",
    "PoolRecord",
    "PoolSpec",
    "State",
    "pools_from",
]

DEFAULT_MODELS = ("gemma-3-270m", "qwen3-30b-a3b")
"""The models every pool serves unless told otherwise."""


def _to_models(value: Iterable[str]) -> tuple[str, ...]:
    return tuple(value)


@attrs.frozen
class PoolSpec:
    """A pool to emulate: id, size, GPU type, models and (optionally) its own readiness delay."""

    id: str
    gpus: int = 8
    gpu_type: str = "nvidia-h100-80gb"
    models: tuple[str, ...] = attrs.field(default=DEFAULT_MODELS, converter=_to_models)
    ready_delay: float | None = None

    def __attrs_post_init__(self) -> None:
        if self.gpus < 0:
            raise ValueError("a pool cannot have a negative number of GPUs")
        if self.ready_delay is not None:
            check_delay("ready_delay", self.ready_delay)


@attrs.frozen
class PoolRecord:
    """A snapshot of an emulated pool."""

    id: str
    gpu_type: str
    gpus_total: int
    gpus_free: int
    models: tuple[str, ...]
    default: bool

    def to_wire(self) -> dict[str, object]:
        """The pool as the wire carries it."""
        return {
            "id": self.id,
            "gpu_type": self.gpu_type,
            "gpus_total": self.gpus_total,
            "gpus_free": self.gpus_free,
            "models": list(self.models),
            "default": self.default,
        }


@attrs.frozen
class AllocationRecord:
    """A snapshot of an emulated allocation; times are epoch seconds on the emulator clock."""

    id: str
    pool_id: str
    model: str
    gpu_count: int
    gpu_type: str | None
    status: AllocationStatus
    created_at: float
    ready_at: float
    expires_at: float | None
    ttl_seconds: int | None
    idempotency_key: str | None

    @property
    def endpoint(self) -> str | None:
        """Where a ready allocation serves in-process (``None`` in every other state); over
        TCP its endpoint is under the served URL instead."""
        return self.endpoint_at("https://emulator.invalid")

    def endpoint_at(self, base: str) -> str | None:
        """The allocation's endpoint under ``base``: its OpenAI-compatible API's root."""
        return f"{base}/endpoints/{self.id}" if self.status is AllocationStatus.READY else None

    def to_wire(self, endpoint_base: str = "https://emulator.invalid") -> dict[str, object]:
        """The allocation as the wire carries it, its endpoint under ``endpoint_base``."""
        return {
            "id": self.id,
            "pool_id": self.pool_id,
            "model": self.model,
            "gpu_count": self.gpu_count,
            "gpu_type": self.gpu_type,
            "status": self.status.value,
            "endpoint": self.endpoint_at(endpoint_base),
            "created_at": format_timestamp(self.created_at),
            "expires_at": None if self.expires_at is None else format_timestamp(self.expires_at),
            "ttl_seconds": self.ttl_seconds,
        }


@attrs.frozen
class AllocationRequest:
    """A validated allocation request with its defaults applied: what an idempotency key binds."""

    pool_id: str
    model: str
    gpu_count: int
    gpu_type: str | None
    ttl_seconds: int | None


@attrs.define
class _Pool:
    spec: PoolSpec
    gpus_total: int
    gpus_used: int = 0

    def record(self, default: bool) -> PoolRecord:
        return PoolRecord(
            id=self.spec.id,
            gpu_type=self.spec.gpu_type,
            gpus_total=self.gpus_total,
            gpus_free=max(0, self.gpus_total - self.gpus_used),
            models=self.spec.models,
            default=default,
        )


class State:
    """Pools, allocations and idempotency keys, with every lifecycle rule of the contract.

    Not thread-safe: the emulator holds its lock around every call.
    """

    def __init__(
        self,
        pools: Sequence[PoolSpec],
        *,
        ready_delay: float,
        capacity_retry_after: int,
        failure_rate: float,
        seed: int,
    ) -> None:
        if not pools:
            raise ValueError("an emulator needs at least one pool")
        self._specs = tuple(pools)
        self._ready_delay = ready_delay
        self._capacity_retry_after = capacity_retry_after
        self.failure_rate = failure_rate
        self._seed = seed
        self.reset()

    def reset(self) -> None:
        """Forget every allocation and key; pools get their configured sizes back."""
        self._pools = {spec.id: _Pool(spec, spec.gpus) for spec in self._specs}
        self._default_pool_id = self._specs[0].id
        self._allocations: dict[str, AllocationRecord] = {}
        self._live: dict[str, AllocationRecord] = {}
        self._keys: dict[str, tuple[AllocationRequest, str]] = {}
        self._fail_next = 0
        self._doomed_ids: set[str] = set()
        self._ids = random.Random(self._seed)
        self._failures = random.Random(self._seed + 1)

    def new_id(self, prefix: str) -> str:
        """A fresh identifier: ``prefix`` + 24 hex digits, reproducible from the seed."""
        return f"{prefix}{self._ids.getrandbits(96):024x}"

    # Pools

    @property
    def default_pool_id(self) -> str:
        """The pool used when a request names none."""
        return self._default_pool_id

    def pools(self) -> list[PoolRecord]:
        """Every pool, the default first."""
        return [
            pool.record(pool_id == self._default_pool_id) for pool_id, pool in self._pools.items()
        ]

    def pool(self, pool_id: str) -> PoolRecord | None:
        """One pool, or ``None``."""
        pool = self._pools.get(pool_id)
        return None if pool is None else pool.record(pool_id == self._default_pool_id)

    def set_capacity(self, pool_id: str, gpus: int) -> None:
        """Resize a pool; allocations already holding GPUs keep them."""
        if gpus < 0:
            raise ValueError("a pool cannot have a negative number of GPUs")
        self._pools[pool_id].gpus_total = gpus

    # Allocations

    def get(self, allocation_id: str) -> AllocationRecord | None:
        """One allocation in any state, or ``None``."""
        return self._allocations.get(allocation_id)

    def allocations(self) -> list[AllocationRecord]:
        """Every allocation ever made, oldest first."""
        return list(self._allocations.values())

    def live(self, pool_id: str | None = None) -> list[AllocationRecord]:
        """The allocations holding GPUs, oldest first, optionally of one pool."""
        return [a for a in self._live.values() if pool_id is None or a.pool_id == pool_id]

    def created_by_key(self) -> dict[str, list[str]]:
        """Idempotency key -> the ids of the allocations created with it."""
        created: dict[str, list[str]] = {}
        for allocation in self._allocations.values():
            if allocation.idempotency_key is not None:
                created.setdefault(allocation.idempotency_key, []).append(allocation.id)
        return created

    def fail_next(self, count: int) -> None:
        """Make the next ``count`` allocations fail instead of becoming ready."""
        self._fail_next += count

    def settle(self, now: float) -> None:
        """Apply every readiness and expiry transition due by ``now``."""
        for allocation in list(self._live.values()):
            self._settle(allocation, now)

    def allocate(
        self, request: AllocationRequest, key: str | None, now: float
    ) -> tuple[AllocationRecord, bool]:
        """Create an allocation, or replay the one ``key`` made; also says whether it replayed."""
        if key is not None and key in self._keys:
            bound_request, allocation_id = self._keys[key]
            if bound_request != request:
                raise WireError(
                    "idempotency_conflict",
                    "This Idempotency-Key was already used with a different request body.",
                )
            return self._allocations[allocation_id], True
        pool = self._check_request(request)
        free = pool.gpus_total - pool.gpus_used
        if free < request.gpu_count:
            raise WireError(
                "capacity_exhausted",
                f"Pool {request.pool_id!r} cannot take the allocation: "
                f"it needs {_gpus(request.gpu_count)}, {free} free.",
                headers={"retry-after": str(self._capacity_retry_after)},
            )
        ready_delay = pool.spec.ready_delay
        ready_at = now + (self._ready_delay if ready_delay is None else ready_delay)
        allocation = AllocationRecord(
            id=self.new_id("alloc_"),
            pool_id=request.pool_id,
            model=request.model,
            gpu_count=request.gpu_count,
            gpu_type=pool.spec.gpu_type,
            status=AllocationStatus.PENDING,
            created_at=now,
            ready_at=ready_at,
            expires_at=None if request.ttl_seconds is None else now + request.ttl_seconds,
            ttl_seconds=request.ttl_seconds,
            idempotency_key=key,
        )
        pool.gpus_used += allocation.gpu_count
        self._store(allocation)
        if key is not None:
            self._keys[key] = (request, allocation.id)
        if self._doomed():
            # Reported pending, failing on its next look, so a poller always sees the failure.
            self._doomed_ids.add(allocation.id)
        else:
            allocation = self._settle(allocation, now)
        return allocation, False

    def renew(self, allocation_id: str, ttl_seconds: int | None, now: float) -> AllocationRecord:
        """Push back the expiry of a live allocation to ``now + ttl``."""
        allocation = self._require(allocation_id)
        if not allocation.status.live:
            raise _gone(allocation)
        ttl = allocation.ttl_seconds if ttl_seconds is None else ttl_seconds
        return self._store(
            attrs.evolve(allocation, ttl_seconds=ttl, expires_at=None if ttl is None else now + ttl)
        )

    def release(self, allocation_id: str) -> None:
        """Release an allocation; releasing a finished one does nothing."""
        allocation = self._require(allocation_id)
        if allocation.status.live:
            self._transition(allocation, AllocationStatus.RELEASED)

    def finish(self, allocation_id: str, status: AllocationStatus) -> AllocationRecord:
        """Force a live allocation into a final state (``failed`` or ``expired``)."""
        allocation = self._require(allocation_id)
        if not allocation.status.live:
            return allocation
        return self._transition(allocation, status)

    def usable(self, allocation_id: str, model: str | None) -> AllocationRecord:
        """The allocation, if it can serve an inference request for ``model`` now."""
        allocation = self._require(allocation_id)
        if model is not None and model != allocation.model:
            raise WireError(
                "model_mismatch",
                f"Allocation {allocation_id!r} serves {allocation.model!r}, not {model!r}.",
            )
        if allocation.status is AllocationStatus.PENDING:
            raise WireError("allocation_not_ready", f"Allocation {allocation_id} is still pending.")
        if not allocation.status.live:
            raise _gone(allocation)
        return allocation

    # Internals

    def _check_request(self, request: AllocationRequest) -> _Pool:
        pool = self._pools.get(request.pool_id)
        if pool is None:
            raise WireError("unknown_pool", f"There is no pool {request.pool_id!r}.")
        if request.model not in pool.spec.models:
            raise WireError(
                "unknown_model", f"Pool {request.pool_id!r} does not serve {request.model!r}."
            )
        if request.gpu_type is not None and request.gpu_type != pool.spec.gpu_type:
            raise WireError(
                "gpu_type_unavailable",
                f"Pool {request.pool_id!r} has {pool.spec.gpu_type!r}, not {request.gpu_type!r}.",
            )
        if request.gpu_count > pool.gpus_total:
            raise WireError(
                "exceeds_pool_size",
                f"Pool {request.pool_id!r} has only {pool.gpus_total} GPUs in total.",
            )
        return pool

    def _doomed(self) -> bool:
        if self._fail_next > 0:
            self._fail_next -= 1
            return True
        return self.failure_rate > 0 and self._failures.random() < self.failure_rate

    def _require(self, allocation_id: str) -> AllocationRecord:
        allocation = self._allocations.get(allocation_id)
        if allocation is None:
            raise WireError("allocation_not_found", f"There is no allocation {allocation_id!r}.")
        return allocation

    def _settle(self, allocation: AllocationRecord, now: float) -> AllocationRecord:
        expires_at = allocation.expires_at
        if expires_at is not None and now >= expires_at and expires_at <= allocation.ready_at:
            return self._transition(allocation, AllocationStatus.EXPIRED)
        if allocation.status is AllocationStatus.PENDING and now >= allocation.ready_at:
            doomed = allocation.id in self._doomed_ids
            allocation = self._transition(
                allocation, AllocationStatus.FAILED if doomed else AllocationStatus.READY
            )
        if allocation.status.live and expires_at is not None and now >= expires_at:
            allocation = self._transition(allocation, AllocationStatus.EXPIRED)
        return allocation

    def _transition(
        self, allocation: AllocationRecord, status: AllocationStatus
    ) -> AllocationRecord:
        if allocation.status.live and not status.live:
            self._pools[allocation.pool_id].gpus_used -= allocation.gpu_count
            self._doomed_ids.discard(allocation.id)
        return self._store(attrs.evolve(allocation, status=status))

    def _store(self, allocation: AllocationRecord) -> AllocationRecord:
        self._allocations[allocation.id] = allocation
        if allocation.status.live:
            self._live[allocation.id] = allocation
        else:
            self._live.pop(allocation.id, None)
        return allocation


def _gpus(count: int) -> str:
    return "1 GPU" if count == 1 else f"{count} GPUs"


def _gone(allocation: AllocationRecord) -> WireError:
    code = {
        AllocationStatus.EXPIRED: "allocation_expired",
        AllocationStatus.RELEASED: "allocation_released",
    }.get(allocation.status, "allocation_failed")
    return WireError(code, f"Allocation {allocation.id} is {allocation.status.value}.")


def pools_from(pools: Mapping[str, int] | Sequence[PoolSpec] | None) -> list[PoolSpec]:
    """Pool specs from the forms the emulator accepts (``None``: one default pool)."""
    if pools is None:
        return [PoolSpec("gpu-pool-1", 8)]
    if isinstance(pools, Mapping):
        return [PoolSpec(pool_id, gpus) for pool_id, gpus in pools.items()]
    return list(pools)
