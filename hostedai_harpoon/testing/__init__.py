"""An in-memory HostedAI API for tests: pools, allocations, inference and injected faults.

Reach it in-process through httpx transports, over TCP with ``Emulator.serve()``, or as a
process: ``python -m hostedai_harpoon.testing --port 8080``.
"""

from ._asgi import EmulatorApp
from ._clock import EPOCH, Clock, ManualClock, SystemClock
from ._emulator import Emulator, Exchange
from ._faults import Fault, FaultKind, FaultPlan
from ._gpuaas import GpuaasQuirks, SubscriptionRecord
from ._redis import RedisServer
from ._state import DEFAULT_MODELS, AllocationRecord, AllocationStatus, PoolRecord, PoolSpec
from ._transports import AsyncEmulatorTransport, EmulatorTransport
from ._wire import Reply, Request

__all__ = [
    "DEFAULT_MODELS",
    "EPOCH",
    "AllocationRecord",
    "AllocationStatus",
    "AsyncEmulatorTransport",
    "Clock",
    "Emulator",
    "EmulatorApp",
    "EmulatorTransport",
    "Exchange",
    "Fault",
    "FaultKind",
    "FaultPlan",
    "GpuaasQuirks",
    "ManualClock",
    "PoolRecord",
    "PoolSpec",
    "RedisServer",
    "Reply",
    "Request",
    "SubscriptionRecord",
    "SystemClock",
]

for _name in __all__:
    _value = globals()[_name]
    if hasattr(_value, "__module__") and isinstance(_value, type):
        _value.__module__ = __name__
del _name, _value
