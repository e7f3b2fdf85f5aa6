"""Endpoint targets: servers that already run, seen by the slots as leases that never end.

An endpoint target (``Target(..., endpoint=URL)``) has no GPU allocation behind it. The
orchestrator makes one ``AsyncEndpoint`` for it and one ``Slot`` that every scope shares,
so the server's ``max_concurrency`` holds for the whole orchestrator and callers beyond it
queue as they do for an allocation. Nothing is leased or released for it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Sequence
from typing import Any

from .. import AsyncEndpoint, AsyncInferenceStream, InferenceResult, LeaseState
from ..routing import Target

__all__ = ["EndpointLease", "endpoints_of"]


class EndpointLease:
    """An endpoint target's server with the face of a lease: always active, never released."""

    __slots__ = ("endpoint", "id")

    state = LeaseState.ACTIVE

    def __init__(self, target: Target, endpoint: AsyncEndpoint) -> None:
        self.id = f"endpoint:{target.name}"
        self.endpoint = endpoint

    def __repr__(self) -> str:
        return f"<EndpointLease {self.id}>"

    def infer(self, prompt: str, **options: Any) -> Awaitable[InferenceResult]:
        """``AsyncEndpoint.infer`` (the options a lease's ``infer`` takes)."""
        return self.endpoint.infer(prompt, **options)

    def stream(self, prompt: str, **options: Any) -> AsyncInferenceStream:
        """``AsyncEndpoint.stream`` (the options a lease's ``stream`` takes)."""
        return self.endpoint.stream(prompt, **options)


def endpoints_of(targets: Sequence[Target], **options: object) -> dict[str, EndpointLease]:
    """An ``EndpointLease`` per endpoint target, by name (``options`` go to each
    ``AsyncEndpoint``: timeouts, retries)."""
    made: dict[str, EndpointLease] = {}
    for target in targets:
        if target.endpoint is None:
            continue
        key = None if target.api_key is None else target.api_key.reveal()
        endpoint = AsyncEndpoint(
            target.endpoint,
            api_key=key,
            model=target.model,
            inference=target.inference,  # type: ignore[arg-type]
            **options,  # type: ignore[arg-type]
        )
        del key
        made[target.name] = EndpointLease(target, endpoint)
    return made
