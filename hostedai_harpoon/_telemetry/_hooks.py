"""The hooks the decision points call, as no-op base classes.

With no OpenTelemetry SDK configured every ``start_*`` function hands out the shared
instances below, whose methods do nothing; with one, it hands out the live subclasses in
``_calls``, ``_leases`` and ``_spans``. The hooks are plain method calls made from
generator code (the request plan, the lease flows), so no span is ever "current" across a
``yield``: each span is started with its parent context and ended by an explicit call.
Every method may be called in any order and more than once; only the first end counts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import httpx
    from opentelemetry.context import Context

    from .._models import Allocation, InferenceChunk
    from ..routing import RouteDecision

AttributeValue = str | bool | int | float | Sequence[str]
# A streamed call's trace rides on its response (``extensions``) to the stream reading it.
STREAM_TRACE: Final = "hostedai_harpoon.trace"
Attributes = Mapping[str, AttributeValue]


class Operation:
    """One API operation as telemetry names it: ``name`` (the span name and
    ``hostedai.operation``; the GenAI operation name for inference), the path ``template``
    (``url.template``, low-cardinality), and whether it is GenAI inference."""

    __slots__ = ("genai", "name", "template")

    def __init__(self, name: str, template: str, *, genai: bool = False) -> None:
        self.name = name
        self.template = template
        self.genai = genai

    def __repr__(self) -> str:
        return f"Operation({self.name!r}, {self.template!r}, genai={self.genai})"


class SpanTrace:
    """A span the SDK started: its context for children, events, and its end."""

    __slots__ = ()

    @property
    def context(self) -> Context | None:
        """The context children of this span are started in (None when not recording)."""
        return None

    def event(self, name: str, attributes: Attributes | None = None) -> None:
        """Add an event to the span."""

    def annotate(self, attributes: Attributes) -> None:
        """Set attributes on the span."""

    def end(self, error: BaseException | None = None) -> None:
        """End the span; with ``error``, as failed with its ``error.type``."""


class CallTrace(SpanTrace):
    """One API call, over all its attempts (the plan calls these at its decision points)."""

    __slots__ = ()

    def attempt_started(self, index: int, request: httpx.Request) -> None:
        """Attempt ``index`` (0 for the first) of the call is about to send ``request``."""

    def attempt_ended(self, outcome: int | BaseException) -> None:
        """The attempt got an answer with this status code, or failed with this error."""

    def retrying(self, wait: float, error: BaseException) -> None:
        """The call will be tried again in ``wait`` seconds after ``error``."""

    def succeeded(self, result: object = None) -> None:
        """The call returned ``result`` (for a stream: its response; the span stays open
        until ``stream_ended``)."""

    def failed(self, error: BaseException) -> None:
        """The call ends with ``error`` (cancellation and ``GeneratorExit`` included)."""

    def chunk(self, chunk: InferenceChunk) -> None:
        """A stream delivered ``chunk``; the first one sets the time to first chunk."""

    def stream_ended(self) -> None:
        """The stream was read to its end or closed early; the call's span ends."""


class AllocationTrace(SpanTrace):
    """One lease: its allocation span, its phases, and the allocation metrics."""

    __slots__ = ()

    def allocated(self, allocation: Allocation) -> None:
        """The server answered the create with ``allocation`` (held from now on)."""

    def moved(self, old: str, new: str) -> None:
        """The lease went from state ``old`` to ``new`` (``LeaseState`` values); the span
        ends when the lease is ``released`` or ``orphaned``."""

    def phase(self, name: str) -> SpanTrace:
        """Start the child span of one phase: ``create``, ``wait_ready``, ``renew`` or
        ``release``."""
        return NO_SPAN

    def errored(self, error: BaseException) -> None:
        """Note the error the lease failed with (entering, renewing or releasing)."""

    def work_context(self) -> Context | None:
        """The context a call on the leased allocation starts in: the caller's when it has a
        span of its own (``None``), else the allocation's."""
        return None


class RouteTrace(SpanTrace):
    """One routing decision."""

    __slots__ = ()

    def decided(self, decision: RouteDecision) -> None:
        """The policy decided (target, reason, score, fallbacks); the span ends."""


NO_SPAN: Final = SpanTrace()
NO_CALL: Final = CallTrace()
NO_ALLOCATION: Final = AllocationTrace()
NO_ROUTE: Final = RouteTrace()
