"""Telemetry: OpenTelemetry traces and metrics, and the package's logging, in one place.

The decision points call the functions below (the request plan, the lease core,
``route()``, the circuit breaker, the orchestrator), never the sync and async drivers, so
both twins emit the same telemetry. The package depends on ``opentelemetry-api`` only and
never installs a provider: with no SDK configured each function returns a shared no-op
object after one cheap check (``_switch``), and ``opentelemetry`` is not even imported.

Spans nest as a user reads them: orchestrator call -> route decision -> allocation
(create, wait ready, renew, release) -> inference call -> HTTP attempts. Each span is
started with an explicit parent (by default, the caller's current context when the call
starts) and ended explicitly, because the code that feeds them is generators shared by
the sync and async clients: nothing is made current across a ``yield``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from typing import TYPE_CHECKING

from ._hooks import (
    NO_ALLOCATION,
    NO_CALL,
    NO_ROUTE,
    NO_SPAN,
    STREAM_TRACE,
    AllocationTrace,
    Attributes,
    CallTrace,
    Operation,
    RouteTrace,
    SpanTrace,
)
from ._logging import configure_logging
from ._redact import MASK, MIN_SECRET, redact, remember_secret
from ._switch import recorder

if TYPE_CHECKING:
    import httpx
    from opentelemetry.context import Context

__all__ = [
    "MASK",
    "MIN_SECRET",
    "NO_ALLOCATION",
    "NO_CALL",
    "NO_ROUTE",
    "NO_SPAN",
    "AllocationTrace",
    "CallTrace",
    "Operation",
    "RouteTrace",
    "SpanTrace",
    "breaker_moved",
    "configure_logging",
    "current",
    "failed_over",
    "policy_name",
    "priced",
    "recording",
    "redact",
    "remember_secret",
    "start_allocation",
    "start_call",
    "start_route",
    "start_span",
    "stream_trace",
]


def recording() -> bool:
    """Whether anything records (an SDK is configured): a hot path with spans of its own
    to open skips them, and what only they would read, when nothing would."""
    return recorder() is not None


def start_call(
    operation: Operation,
    body: object = None,
    *,
    model: str | None = None,
    parent: Context | None = None,
) -> CallTrace:
    """Start tracing one API call: ``body`` is its JSON request body (inference reads the
    model and parameters from it; ``model`` names the model when the body does not). For a
    stream, ``succeeded(response)`` hands the trace on to the stream (``stream_trace``)."""
    live = recorder()
    if live is None:
        return NO_CALL
    return live.call(operation, body if isinstance(body, Mapping) else None, model, parent)


def stream_trace(response: httpx.Response) -> CallTrace:
    """The trace of the streamed call whose response this is (the no-op one if none)."""
    trace: CallTrace = response.extensions.get(STREAM_TRACE, NO_CALL)
    return trace


_PRICE: ContextVar[float | None] = ContextVar("hostedai_harpoon_gpu_hour_price", default=None)


def start_allocation(
    *,
    model: str,
    gpus: int,
    gpu_type: str | None = None,
    pool: str | None = None,
    parent: Context | None = None,
) -> AllocationTrace:
    """Start tracing one lease (its cost is estimated inside ``priced(...)``)."""
    live = recorder()
    if live is None:
        return NO_ALLOCATION
    return live.allocation(model, gpus, gpu_type, pool, _PRICE.get(), parent)


@contextmanager
def priced(cost_per_gpu_hour: float) -> Iterator[None]:
    """Leases entered inside the block cost this much per GPU-hour (for the cost counter);
    the orchestrator knows its targets' prices, a lease alone does not."""
    token = _PRICE.set(cost_per_gpu_hour)
    try:
        yield
    finally:
        _PRICE.reset(token)


def current(span: SpanTrace) -> AbstractContextManager[object]:
    """Make ``span`` the current span inside a ``with`` block, for code that is not a
    generator shared by the twins (the orchestrator, which is async only): what it calls
    nests under it. With no SDK, a shared block that changes nothing."""
    context = span.context
    if context is None:
        return _UNCHANGED
    from ._spans import attached

    return attached(context)


_UNCHANGED = nullcontext()


def start_span(
    name: str,
    attributes: Attributes | None = None,
    *,
    parent: Context | None = None,
    client: bool = False,
) -> SpanTrace:
    """Start a span of the SDK's own, such as an orchestrator call (kind CLIENT with
    ``client``, else INTERNAL)."""
    live = recorder()
    if live is None:
        return NO_SPAN
    return live.span(name, attributes, parent, client)


def start_route(policy: object, *, parent: Context | None = None) -> RouteTrace:
    """Start tracing one routing decision by ``policy`` (a policy object or function)."""
    live = recorder()
    if live is None:
        return NO_ROUTE
    return live.route(policy_name(policy), parent)


def policy_name(policy: object) -> str:
    """What telemetry calls a routing policy: a function's or a class's qualified name."""
    name: str = getattr(policy, "__qualname__", None) or type(policy).__qualname__
    return name


def failed_over(
    source: str, target: str, error: BaseException | None, on: SpanTrace | None = None
) -> None:
    """A request that failed on target ``source`` with ``error`` moves to ``target``:
    count it and note it on the span ``on`` (default: the current one)."""
    live = recorder()
    if live is not None:
        live.failed_over(source, target, error, on)


def breaker_moved(name: str, old: str, new: str) -> None:
    """The circuit breaker ``name`` went from state ``old`` to ``new``."""
    live = recorder()
    if live is not None:
        live.breaker_moved(name, old, new)
