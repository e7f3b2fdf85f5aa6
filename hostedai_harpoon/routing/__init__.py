"""Routing: choose a target for each request with a pluggable, pure policy."""

from .._exceptions import NoRouteError
from ._base import (
    InferenceOutcome,
    RouteDecision,
    RouteRequest,
    RoutingPolicy,
    Target,
    TargetState,
    Tier,
)
from ._route import route
from .cascade import CascadePolicy
from .complexity import ComplexityPolicy
from .cost import CostPolicy
from .fallback import FallbackPolicy
from .latency import LatencyPolicy
from .targets import DEFAULT_TARGETS
from .weighted import WeightedPolicy

__all__ = [
    "DEFAULT_TARGETS",
    "CascadePolicy",
    "ComplexityPolicy",
    "CostPolicy",
    "FallbackPolicy",
    "InferenceOutcome",
    "LatencyPolicy",
    "NoRouteError",
    "RouteDecision",
    "RouteRequest",
    "RoutingPolicy",
    "Target",
    "TargetState",
    "Tier",
    "WeightedPolicy",
    "route",
]
