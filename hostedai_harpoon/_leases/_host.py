"""What a lease needs from the client that made it, and nothing more."""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

import attrs
import httpx

from .._exceptions import AllocationError
from .._http import _openai as openai
from .._http._plan import Planner
from .._models import Allocation
from .._resilience import CircuitBreaker
from ._release import OrphanLedger

if TYPE_CHECKING:
    from ._gpuaas import GpuaasPlane

__all__ = ["Gate", "LeaseHost"]


class Gate(Protocol):
    """A place under the client's per-pool limit (a thread's or a task's semaphore)."""

    def release(self) -> None:
        """Give the place back."""


DriverT = TypeVar("DriverT")
GateT = TypeVar("GateT", bound=Gate)


@attrs.frozen
class LeaseHost(Generic[DriverT, GateT]):
    """The client's side of a lease, handed to it when it is made.

    ``planner`` plans the client's calls as the user configured them (a lease derives from
    it the patient, breaker-free planner it releases with); ``driver`` carries them out;
    ``ledger`` keeps what could not be released; ``gate`` is the client's per-pool limit on
    allocations, if any.
    """

    planner: Planner
    driver: DriverT
    ledger: OrphanLedger
    gate: GateT | None
    pool_id: str | None
    max_event_bytes: int
    # Whether an OpenAI lease may send the key over plain http to a host not this machine.
    allow_insecure_http: bool = False
    # The platform side of a ``gpuaas`` client (``None``: the v1 API).
    gpuaas: GpuaasPlane | None = None
    # A driver on a connection pool of its own for renewals and releases, so that they
    # never wait behind new work for a connection (None: ``driver``).
    upkeep: DriverT | None = None

    @property
    def upkeep_driver(self) -> DriverT:
        """The driver renewals and releases go through."""
        return self.driver if self.upkeep is None else self.upkeep

    def endpoint_planner(self, allocation: Allocation) -> Planner:
        """The planner of calls to an OpenAI lease's endpoint: the client's settings and key,
        the endpoint as prefix, a breaker of its own (its host is not the control plane's).
        An endpoint that is missing or unusable is an ``AllocationError``: nothing is sent.
        A ``gpuaas`` pod's vLLM server is sent no key: the platform's key is not its."""
        keyed = self.gpuaas is None
        root, why = openai.check_endpoint(
            allocation.endpoint,
            f"the endpoint of allocation {allocation.id}",
            keyed=keyed,
            allow_insecure_http=self.allow_insecure_http,
        )
        if root is None:
            raise AllocationError(
                f"allocation {allocation.id} cannot be reached over the OpenAI-compatible "
                f"API: {why}",
                allocation_id=allocation.id,
            )
        breaker = self.planner.breaker
        if breaker is not None:
            breaker = CircuitBreaker(breaker.config, name=httpx.URL(root).netloc.decode("ascii"))
        if not keyed:
            return attrs.evolve(
                self.planner, prefix=root, breaker=breaker, secret=None, secret_headers={}
            )
        return attrs.evolve(self.planner, prefix=root, breaker=breaker)
