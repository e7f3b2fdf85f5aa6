"""hostedai-harpoon: a typed client for HostedAI's GPU pools.

```python
import hostedai_harpoon as harpoon

with harpoon.HostedAI() as client:          # HOSTED_AI_BASE_URL / HOSTED_AI_API_KEY
    with client.allocate(model="gemma-3-270m") as lease:
        print(lease.infer("Hello").text)
```
"""

from typing import TYPE_CHECKING, Any

from ._client import AsyncEndpoint, AsyncHostedAI, Endpoint, HostedAI
from ._config import NOT_GIVEN, NotGiven
from ._exceptions import (
    AllAttemptsFailedError,
    AllocationError,
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    BudgetExceededError,
    CapacityError,
    CircuitOpenError,
    ConfigurationError,
    ConflictError,
    GoneError,
    HostedAIError,
    InternalServerError,
    NoRouteError,
    NotFoundError,
    OrchestratorClosedError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
    UnprocessableEntityError,
    UsageError,
)
from ._http._sse import AsyncInferenceStream, InferenceStream
from ._leases import AsyncLease, Lease, LeaseState, OrphanedAllocation
from ._models import (
    Allocation,
    AllocationStatus,
    Health,
    InferenceChunk,
    InferenceResult,
    Pool,
    Usage,
)
from ._resilience import CircuitBreaker, CircuitBreakerConfig, CircuitState, RetryPolicy
from ._telemetry import configure_logging as _configure_logging
from ._version import __version__

if TYPE_CHECKING:
    from .orchestrator import (
        Attempt,
        HealthReport,
        Orchestrator,
        RoutedResult,
        RoutedStream,
        Session,
        Snapshot,
        TargetHealth,
        TargetStats,
    )
    from .routing import (
        DEFAULT_TARGETS,
        CascadePolicy,
        ComplexityPolicy,
        CostPolicy,
        FallbackPolicy,
        LatencyPolicy,
        RouteDecision,
        RouteRequest,
        RoutingPolicy,
        Target,
        TargetState,
        Tier,
        WeightedPolicy,
        route,
    )

# Routing is imported on first use: programs that only call the API don't pay for it.
_ROUTING_NAMES = frozenset(
    {
        "DEFAULT_TARGETS",
        "CascadePolicy",
        "ComplexityPolicy",
        "CostPolicy",
        "FallbackPolicy",
        "LatencyPolicy",
        "RouteDecision",
        "RouteRequest",
        "RoutingPolicy",
        "Target",
        "TargetState",
        "Tier",
        "WeightedPolicy",
        "route",
    }
)

# The Orchestrator likewise: it imports asyncio, which plain API users need not pay for.
_ORCHESTRATOR_NAMES = frozenset(
    {
        "Attempt",
        "HealthReport",
        "Orchestrator",
        "RedisState",
        "RoutedResult",
        "RoutedStream",
        "Session",
        "Snapshot",
        "TargetHealth",
        "TargetStats",
    }
)


def __getattr__(name: str) -> Any:
    if name in _ROUTING_NAMES:
        from . import routing as module
    elif name in _ORCHESTRATOR_NAMES:
        from . import orchestrator as module  # type: ignore[no-redef]
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_ROUTING_NAMES, *_ORCHESTRATOR_NAMES})


__all__ = [
    "DEFAULT_TARGETS",
    "NOT_GIVEN",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AllAttemptsFailedError",
    "Allocation",
    "AllocationError",
    "AllocationStatus",
    "AsyncEndpoint",
    "AsyncHostedAI",
    "AsyncInferenceStream",
    "AsyncLease",
    "Attempt",
    "AuthenticationError",
    "BadRequestError",
    "BudgetExceededError",
    "CapacityError",
    "CascadePolicy",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitOpenError",
    "CircuitState",
    "ComplexityPolicy",
    "ConfigurationError",
    "ConflictError",
    "CostPolicy",
    "Endpoint",
    "FallbackPolicy",
    "GoneError",
    "Health",
    "HealthReport",
    "HostedAI",
    "HostedAIError",
    "InferenceChunk",
    "InferenceResult",
    "InferenceStream",
    "InternalServerError",
    "LatencyPolicy",
    "Lease",
    "LeaseState",
    "NoRouteError",
    "NotFoundError",
    "NotGiven",
    "Orchestrator",
    "OrchestratorClosedError",
    "OrphanedAllocation",
    "PermissionDeniedError",
    "Pool",
    "RateLimitError",
    "RedisState",
    "ResponseValidationError",
    "RetryPolicy",
    "RouteDecision",
    "RouteRequest",
    "RoutedResult",
    "RoutedStream",
    "RoutingPolicy",
    "Session",
    "Snapshot",
    "Target",
    "TargetHealth",
    "TargetState",
    "TargetStats",
    "Tier",
    "UnprocessableEntityError",
    "Usage",
    "UsageError",
    "WeightedPolicy",
    "__version__",
    "route",
]

# Reprs and docs say ``hostedai_harpoon.HostedAI``, not the private module it lives in.
for _name in __all__:
    if _name in _ROUTING_NAMES or _name in _ORCHESTRATOR_NAMES:
        continue
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = __name__
del _name, _obj

# Redaction on the package logger, and a stderr log when HOSTED_AI_LOG asks for one.
_configure_logging()
