"""The emulator's inspection and test hooks, on either dialect: what is live, what was made,
the pools, and the calls that fail, end or resize things (Python calls, never subject to
faults). On ``gpuaas`` an allocation is a subscription (:class:`SubscriptionRecord`) of the
tests' team; rows of ``OTHER_TEAM`` are never shown nor touched."""

from __future__ import annotations

import threading
from typing import Any

from ._api import Api
from ._clock import Clock
from ._gpuaas import OTHER_TEAM, GpuaasApi
from ._state import AllocationRecord, AllocationStatus, PoolRecord, State

__all__ = ["Hooks"]


class Hooks:
    """Mixed into :class:`Emulator`; reads and changes its state under its lock."""

    _lock: threading.Lock
    _state: State
    _api: Api
    _gpuaas: GpuaasApi | None
    clock: Clock

    def _settled(self) -> GpuaasApi | None:
        """Move the state of the emulator's dialect on to now (call under the lock); its
        platform on ``gpuaas``, else ``None``."""
        now = self.clock.now()
        if self._gpuaas is not None:
            self._gpuaas.settle(now)
        else:
            self._state.settle(now)
        return self._gpuaas

    # Inspection

    def live_allocations(self) -> list[Any]:
        """The allocations still holding GPUs (pending, ready, releasing), oldest first; on
        ``gpuaas``, the subscriptions not yet gone (:class:`SubscriptionRecord`)."""
        with self._lock:
            if (platform := self._settled()) is not None:
                return [r for r in platform.live() if r.team_id != OTHER_TEAM]
            return self._state.live()

    @property
    def foreign_touches(self) -> int:
        """``gpuaas``: how many requests named another team's subscription (should be 0)."""
        return 0 if self._gpuaas is None else self._gpuaas.foreign_touches

    def allocations(self) -> list[Any]:
        """Every allocation made, in any state, oldest first (on ``gpuaas``, every
        subscription, gone ones included)."""
        with self._lock:
            platform = self._settled()
            return self._state.allocations() if platform is None else platform.every()

    def get(self, allocation_id: str) -> Any:
        """One allocation (subscription) in its current state; ``KeyError`` if there is none."""
        found = next((a for a in self.allocations() if a.id == allocation_id), None)
        if found is None:
            raise KeyError(allocation_id)
        return found

    def pools(self) -> list[PoolRecord]:
        """Every pool with its current free GPUs, the default first."""
        with self._lock:
            platform = self._settled()
            return self._state.pools() if platform is None else platform.pool_records()

    # Test hooks

    @property
    def failure_rate(self) -> float:
        """The share of new allocations that end ``failed`` instead of ``ready`` (on
        ``gpuaas``: subscriptions whose pod fails instead of running)."""
        return self._state.failure_rate if self._gpuaas is None else self._gpuaas.failure_rate

    @failure_rate.setter
    def failure_rate(self, rate: float) -> None:
        with self._lock:
            if self._gpuaas is not None:
                self._gpuaas.failure_rate = rate
            self._state.failure_rate = rate

    def fail_next_allocations(self, count: int = 1) -> None:
        """Make the next ``count`` new allocations end ``failed`` instead of ``ready`` (on
        ``gpuaas``: their pods fail)."""
        with self._lock:
            if self._gpuaas is not None:
                self._gpuaas.fail_next += count
            else:
                self._state.fail_next(count)

    def fail_allocation(self, allocation_id: str) -> Any:
        """Fail a live allocation now (its GPUs are freed; on ``gpuaas`` the subscription
        leaves the list and its pod stops serving)."""
        return self._finish(allocation_id, AllocationStatus.FAILED)

    def expire_allocation(self, allocation_id: str) -> Any:
        """Expire a live allocation now (its GPUs are freed; on ``gpuaas`` as
        :meth:`fail_allocation`: the platform has no TTL, but can reclaim a subscription)."""
        return self._finish(allocation_id, AllocationStatus.EXPIRED)

    def set_capacity(self, pool_id: str, gpus: int) -> None:
        """Resize a pool; allocations already holding GPUs keep them."""
        with self._lock:
            if self._gpuaas is not None:
                self._gpuaas.set_capacity(pool_id, gpus)
            else:
                self._state.set_capacity(pool_id, gpus)

    def set_health(self, status: str) -> None:
        """What ``GET /v1/health`` reports: ``"ok"`` or ``"degraded"`` (v1 only: the
        platform has no health endpoint)."""
        if status not in ("ok", "degraded"):
            raise ValueError("health is 'ok' or 'degraded'")
        with self._lock:
            self._api.health_status = status

    def _finish(self, allocation_id: str, status: AllocationStatus) -> Any:
        with self._lock:
            if (platform := self._settled()) is not None:
                return platform.lose(allocation_id, status.value)
            if self._state.get(allocation_id) is None:
                raise KeyError(allocation_id)
            record: AllocationRecord = self._state.finish(allocation_id, status)
            return record
