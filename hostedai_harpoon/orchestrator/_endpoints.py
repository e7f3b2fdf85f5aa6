"""Endpoint targets: servers that already run, seen by the slots as leases that never end;
and other replicas' allocations, seen the same way (the fleet's warm pool, ``_warm.py``).

An endpoint target (``Target(..., endpoint=URL)``) has no GPU allocation behind it. The
orchestrator makes one ``AsyncEndpoint`` for it and one ``Slot`` that every scope shares,
so the server's ``max_concurrency`` holds for the whole orchestrator and callers beyond it
queue as they do for an allocation. Nothing is leased or released for it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from .. import (
    AllocationError,
    AsyncEndpoint,
    AsyncHostedAI,
    AsyncInferenceStream,
    GoneError,
    InferenceResult,
    LeaseState,
    NotFoundError,
)
from ..routing import Target

__all__ = ["EndpointLease", "RemoteLease", "endpoints_of"]

Elsewhere = Callable[[str, dict[str, object]], Awaitable[InferenceResult]]
"""Runs ``infer(prompt, **options)`` on another place of the same target."""


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


class RemoteLease:
    """Another replica's warm allocation with the face of a lease: inference by its id
    (``client.infer(allocation_id=...)``); its owner renews and releases it, never us.

    Should the owner have released it meanwhile (404, 410), the lease turns ``RELEASED``
    (no call is handed to it again) and an ``infer`` runs ``elsewhere`` instead, on
    another place of the target; a stream fails over.
    """

    __slots__ = ("_client", "_elsewhere", "id", "owner", "state")

    def __init__(
        self, client: AsyncHostedAI, allocation_id: str, owner: str, elsewhere: Elsewhere
    ) -> None:
        self._client = client
        self._elsewhere = elsewhere
        self.id = allocation_id
        self.owner = owner
        self.state = LeaseState.ACTIVE

    def __repr__(self) -> str:
        return f"<RemoteLease {self.id} of {self.owner}>"

    async def infer(
        self,
        prompt: str,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
    ) -> InferenceResult:
        try:
            return await self._client.infer(
                self.id, prompt, max_tokens=max_tokens, temperature=temperature, stop=stop
            )
        except (NotFoundError, GoneError):
            self.state = LeaseState.RELEASED
        options: dict[str, object] = {"max_tokens": max_tokens}
        if temperature is not None:
            options["temperature"] = temperature
        if stop is not None:
            options["stop"] = stop
        return await self._elsewhere(prompt, options)

    async def stream(
        self,
        prompt: str,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
    ) -> AsyncInferenceStream:
        chunks = self._client.stream(
            self.id, prompt, max_tokens=max_tokens, temperature=temperature, stop=stop
        )
        try:
            return await chunks
        except (NotFoundError, GoneError) as exc:
            self.state = LeaseState.RELEASED
            raise AllocationError(
                f"allocation {self.id} of replica {self.owner} was released before the "
                "stream opened"
            ) from exc


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
