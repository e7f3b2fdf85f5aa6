"""The live lease: an allocation span with its phases and state transitions, and the
allocation metrics (held now, time held, time to ready, GPU-seconds, cost, failed releases)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import SpanKind

from . import _names as n
from ._hooks import AllocationTrace, AttributeValue, SpanTrace
from ._spans import LiveSpan, mark_failed, start

if TYPE_CHECKING:
    from .._models import Allocation
    from ._recorder import Recorder

_OVER = frozenset({"released", "orphaned"})


class LiveAllocation(LiveSpan, AllocationTrace):
    """A recording lease (see ``AllocationTrace`` for what each hook means)."""

    __slots__ = ("_attributes", "_gpus", "_held_since", "_price", "_recorder", "_started")

    def __init__(
        self,
        recorder: Recorder,
        model: str,
        gpus: int,
        gpu_type: str | None,
        pool: str | None,
        cost_per_gpu_hour: float | None,
        parent: Context | None,
    ) -> None:
        attributes: dict[str, AttributeValue] = {n.MODEL: model, n.GPUS: gpus}
        if gpu_type is not None:
            attributes[n.GPU_TYPE] = gpu_type
        if pool is not None:
            attributes[n.POOL] = pool
        span, context = start(
            recorder.tracer, f"allocation {model}", SpanKind.INTERNAL, attributes, parent
        )
        super().__init__(span, context)
        self._recorder = recorder
        self._attributes = attributes
        self._gpus = gpus
        self._price = cost_per_gpu_hour
        self._held_since: float | None = None
        self._started = time.perf_counter()

    def allocated(self, allocation: Allocation) -> None:
        """The allocation exists: name it on the span and count it as held."""
        if self._ended:
            return
        span = self._span
        span.set_attribute(n.ALLOCATION_ID, allocation.id)
        self._attributes[n.POOL] = allocation.pool_id
        span.set_attribute(n.POOL, allocation.pool_id)
        if allocation.gpu_type is not None:
            self._attributes[n.GPU_TYPE] = allocation.gpu_type
            span.set_attribute(n.GPU_TYPE, allocation.gpu_type)
        if self._held_since is None:
            self._held_since = time.perf_counter()
            self._recorder.allocations_active.add(1, self._attributes)

    def moved(self, old: str, new: str) -> None:
        """Note the transition; time the wait for ready; end the lease when it is over."""
        if self._ended:
            return
        self._span.add_event(n.EVENT_LEASE_STATE, {n.LEASE_STATE_FROM: old, n.LEASE_STATE: new})
        self._span.set_attribute(n.LEASE_STATE, new)
        if new == "active":
            waited = time.perf_counter() - self._started
            self._recorder.allocation_wait.record(waited, self._attributes)
        elif new in _OVER:
            if new == "orphaned":
                self._recorder.release_failures.add(1, self._attributes)
            self._settle()
            self.end()

    def phase(self, name: str) -> SpanTrace:
        """Start the span of one phase of the lease, under the allocation span."""
        if self._ended:
            return super().phase(name)
        span, context = start(
            self._recorder.tracer,
            f"allocation.{name}",
            SpanKind.INTERNAL,
            {n.PHASE: name, n.MODEL: self._attributes[n.MODEL]},
            self._context,
        )
        return LiveSpan(span, context)

    def errored(self, error: BaseException) -> None:
        """Mark the allocation span failed with ``error`` (it ends with the lease)."""
        if not self._ended:
            mark_failed(self._span, error)

    def work_context(self) -> Context | None:
        """The caller's context (``None``) when it has a span, else the allocation's."""
        if trace.get_current_span().get_span_context().is_valid:
            return None
        return self._context

    def _settle(self) -> None:
        held_since, self._held_since = self._held_since, None
        if held_since is None:
            return
        held = time.perf_counter() - held_since
        recorder, attributes = self._recorder, self._attributes
        recorder.allocations_active.add(-1, attributes)
        recorder.allocation_duration.record(held, attributes)
        recorder.gpu_seconds.add(held * self._gpus, attributes)
        if self._price is not None:
            recorder.cost.add(held * self._gpus * self._price / 3600.0, attributes)
