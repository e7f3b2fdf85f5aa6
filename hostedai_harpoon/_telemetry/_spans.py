"""Live spans: the shared span helpers, the generic span and the routing span."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer

from . import _names as n
from ._hooks import Attributes, RouteTrace, SpanTrace
from ._redact import redact

if TYPE_CHECKING:
    from ..routing import RouteDecision
    from ._recorder import Recorder


def start(
    tracer: Tracer,
    name: str,
    kind: SpanKind,
    attributes: Attributes | None,
    parent: Context | None,
) -> tuple[Span, Context]:
    """Start a span under ``parent`` (None: the caller's current context), and the context
    its children start in. Nothing is attached: the span is current nowhere."""
    if parent is None:
        parent = otel_context.get_current()
    span = tracer.start_span(name, context=parent, kind=kind, attributes=attributes)
    return span, trace.set_span_in_context(span, parent)


@contextmanager
def attached(context: Context) -> Iterator[None]:
    """``context`` made current inside the block (for async code, within one task)."""
    token = otel_context.attach(context)
    try:
        yield
    finally:
        otel_context.detach(token)


def error_type(error: BaseException) -> str:
    """``error.type`` for an exception: its class's full name; ``cancelled`` for a
    cancellation or an abandoned generator."""
    cls = type(error)
    if cls is GeneratorExit or cls.__name__ == "CancelledError":
        return "cancelled"
    module = cls.__module__
    return cls.__qualname__ if module == "builtins" else f"{module}.{cls.__qualname__}"


def mark_failed(span: Span, error: BaseException | str) -> str:
    """Mark ``span`` failed: ``error.type``, an error status and, for an exception, an
    ``exception`` event with its (redacted) message. Returns the ``error.type``."""
    if isinstance(error, str):
        span.set_attribute(n.ERROR_TYPE, error)
        span.set_status(Status(StatusCode.ERROR))
        return error
    kind = error_type(error)
    message = redact(str(error))
    span.set_attribute(n.ERROR_TYPE, kind)
    span.set_status(Status(StatusCode.ERROR, message or kind))
    span.add_event(n.EVENT_EXCEPTION, {n.EXCEPTION_TYPE: kind, n.EXCEPTION_MESSAGE: message})
    return kind


class LiveSpan(SpanTrace):
    """A recording span and the context of its children."""

    __slots__ = ("_context", "_ended", "_span")

    def __init__(self, span: Span, context: Context) -> None:
        self._span = span
        self._context = context
        self._ended = False

    @property
    def context(self) -> Context:
        """The context children of this span are started in."""
        return self._context

    def event(self, name: str, attributes: Attributes | None = None) -> None:
        """Add an event to the span."""
        self._span.add_event(name, attributes)

    def annotate(self, attributes: Attributes) -> None:
        """Set attributes on the span."""
        self._span.set_attributes(attributes)

    def end(self, error: BaseException | None = None) -> None:
        """End the span (once); with ``error``, as failed."""
        if self._ended:
            return
        self._ended = True
        if error is not None:
            mark_failed(self._span, error)
        self._span.end()


class LiveRoute(LiveSpan, RouteTrace):
    """The span of one routing decision, and the decision count."""

    __slots__ = ("_policy", "_recorder")

    def __init__(self, recorder: Recorder, policy: str, parent: Context | None) -> None:
        span, context = start(
            recorder.tracer,
            f"{n.OP_ROUTE} {policy}",
            SpanKind.INTERNAL,
            {n.OPERATION: n.OP_ROUTE, n.ROUTE_POLICY: policy},
            parent,
        )
        super().__init__(span, context)
        self._recorder = recorder
        self._policy = policy

    def decided(self, decision: RouteDecision) -> None:
        """Record the decision on the span, count it, and end the span."""
        if self._ended:
            return
        span, target = self._span, decision.target.name
        span.set_attribute(n.ROUTE_TARGET, target)
        span.set_attribute(n.ROUTE_REASON, redact(decision.reason))
        scores = decision.scores
        score = scores.get(target, scores.get("complexity"))
        if score is not None:
            span.set_attribute(n.ROUTE_SCORE, score)
        if decision.fallbacks:
            span.set_attribute(n.ROUTE_FALLBACKS, [t.name for t in decision.fallbacks])
        self._recorder.route_decisions.add(
            1, {n.ROUTE_TARGET: target, n.ROUTE_POLICY: self._policy}
        )
        self.end()
