"""hostedai-harpoon: a typed client for HostedAI's GPU pools.

```python
import hostedai_harpoon as harpoon

with harpoon.HostedAI() as client:          # HOSTED_AI_BASE_URL / HOSTED_AI_API_KEY
    with client.allocate(model="gemma-3-270m") as lease:
        print(lease.infer("Hello").text)
```
"""

from ._allocation import AsyncLease, Lease, LeaseState, OrphanedAllocation
from ._client import AsyncHostedAI, AsyncInferenceStream, HostedAI, InferenceStream
from ._config import NOT_GIVEN, NotGiven
from ._exceptions import (
    AllocationError,
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    CapacityError,
    CircuitOpenError,
    ConfigurationError,
    ConflictError,
    GoneError,
    HostedAIError,
    InternalServerError,
    NoRouteError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
    UnprocessableEntityError,
)
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
from ._version import __version__

__all__ = [
    "NOT_GIVEN",
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "Allocation",
    "AllocationError",
    "AllocationStatus",
    "AsyncHostedAI",
    "AsyncInferenceStream",
    "AsyncLease",
    "AuthenticationError",
    "BadRequestError",
    "CapacityError",
    "CircuitBreaker",
    "CircuitBreakerConfig",
    "CircuitOpenError",
    "CircuitState",
    "ConfigurationError",
    "ConflictError",
    "GoneError",
    "Health",
    "HostedAI",
    "HostedAIError",
    "InferenceChunk",
    "InferenceResult",
    "InferenceStream",
    "InternalServerError",
    "Lease",
    "LeaseState",
    "NoRouteError",
    "NotFoundError",
    "NotGiven",
    "OrphanedAllocation",
    "PermissionDeniedError",
    "Pool",
    "RateLimitError",
    "ResponseValidationError",
    "RetryPolicy",
    "UnprocessableEntityError",
    "Usage",
    "__version__",
]

# Reprs and docs say ``hostedai_harpoon.HostedAI``, not the private module it lives in.
for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = __name__
del _name, _obj
