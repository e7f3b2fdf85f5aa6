"""The Orchestrator: route each call, lease or reuse GPUs, fail over, leave nothing behind.

```python
async with Orchestrator(client) as orchestrator:
    routed = await orchestrator.process("hello")             # one-shot, on a warm pool
    async with orchestrator.allocate(budget=1.0) as session:  # a scope of GPU use
        routed = await session.infer("Prove that ...")
```

Async only: the sync client and leases are there for scripts.
"""

from .. import AllAttemptsFailedError, BudgetExceededError, OrchestratorClosedError
from ._orchestrator import Orchestrator
from ._redis import RedisState
from ._results import (
    Attempt,
    HealthReport,
    RoutedResult,
    Snapshot,
    TargetHealth,
    TargetStats,
    Verdict,
)
from ._session import Session
from ._stream import RoutedStream

__all__ = [
    "AllAttemptsFailedError",
    "Attempt",
    "BudgetExceededError",
    "HealthReport",
    "Orchestrator",
    "OrchestratorClosedError",
    "RedisState",
    "RoutedResult",
    "RoutedStream",
    "Session",
    "Snapshot",
    "TargetHealth",
    "TargetStats",
    "Verdict",
]

for _name in __all__:
    _value = globals()[_name]
    if isinstance(_value, type) and _value.__module__.startswith(__name__ + "._"):
        _value.__module__ = __name__
del _name, _value
