"""The HostedAI API v1, operation by operation: path, method, body, how the answer is read,
and which statuses mean "already done". The one module that knows the wire's shapes: a
second dialect of the API would be a second module like this one, and nothing that
retries, leases or routes would change.

Every builder checks its arguments first (``_checks.py``), so nothing bad is sent.
"""

from __future__ import annotations

from datetime import timedelta

import httpx

from .. import _models as models
from .._checks import (
    check_gpus,
    check_id,
    check_idempotency_key,
    check_max_tokens,
    check_optional_text,
    check_stop,
    check_temperature,
    check_text,
    ttl_seconds,
)
from .._config import new_idempotency_key
from .._models import Allocation, Health, InferenceResult, Pool
from .._telemetry import Operation
from .._telemetry._names import OP_TEXT_COMPLETION
from ._steps import Call

__all__ = [
    "GONE_STATUSES",
    "create_allocation",
    "get_allocation",
    "get_pool",
    "health",
    "infer",
    "list_allocations",
    "list_pools",
    "release_allocation",
    "renew_allocation",
    "stream",
]

GONE_STATUSES = frozenset({404, 410})
"""A release answered with these found nothing left to release."""

# Each operation as telemetry names it (span name, ``url.template``).
_CREATE = Operation("create_allocation", "/v1/allocate")
_GET = Operation("get_allocation", "/v1/allocate/{id}")
_LIST = Operation("list_allocations", "/v1/allocate")
_RENEW = Operation("renew_allocation", "/v1/allocate/{id}/renew")
_RELEASE = Operation("release_allocation", "/v1/allocate/{id}")
_INFERENCE = Operation(OP_TEXT_COMPLETION, "/v1/inference", genai=True)
_POOLS = Operation("list_pools", "/v1/pools")
_POOL = Operation("get_pool", "/v1/pools/{pool_id}")
_HEALTH = Operation("health", "/v1/health")


def create_allocation(
    model: str,
    gpus: int,
    gpu_type: str | None,
    pool_id: str | None,
    ttl: float | timedelta | None,
    idempotency_key: str | None,
    *,
    retry_capacity: bool = True,
) -> Call[Allocation]:
    """``POST /v1/allocate``; every attempt carries the same ``Idempotency-Key``."""
    body: dict[str, object] = {"model": check_text(model, "model"), "gpu_count": check_gpus(gpus)}
    if pool_id is not None:
        check_id(pool_id, "pool_id")
        body["pool_id"] = pool_id
    if check_optional_text(gpu_type, "gpu_type") is not None:
        body["gpu_type"] = gpu_type
    ttl_in_seconds = ttl_seconds(ttl)
    if ttl_in_seconds is not None:
        body["ttl_seconds"] = ttl_in_seconds
    key = check_idempotency_key(idempotency_key) or new_idempotency_key()
    return Call(
        "POST",
        "/v1/allocate",
        models.parse_allocation,
        operation=_CREATE,
        json=body,
        headers={"idempotency-key": key},
        retry_capacity=retry_capacity,
    )


def get_allocation(allocation_id: str) -> Call[Allocation]:
    """``GET /v1/allocate/{id}``."""
    return Call(
        "GET",
        f"/v1/allocate/{check_id(allocation_id, 'allocation_id')}",
        models.parse_allocation,
        operation=_GET,
    )


def list_allocations(pool_id: str | None) -> Call[list[Allocation]]:
    """``GET /v1/allocate?pool_id=``."""
    params = None if pool_id is None else {"pool_id": check_text(pool_id, "pool_id")}
    return Call("GET", "/v1/allocate", models.parse_allocations, operation=_LIST, params=params)


def renew_allocation(allocation_id: str, ttl: float | timedelta | None) -> Call[Allocation]:
    """``POST /v1/allocate/{id}/renew``. Renewing twice only moves the expiry to the same
    place: safe to repeat."""
    ttl_in_seconds = ttl_seconds(ttl)
    body = {} if ttl_in_seconds is None else {"ttl_seconds": ttl_in_seconds}
    path = f"/v1/allocate/{check_id(allocation_id, 'allocation_id')}/renew"
    return Call("POST", path, models.parse_allocation, operation=_RENEW, json=body)


def release_allocation(allocation_id: str) -> Call[None]:
    """``DELETE /v1/allocate/{id}``; an allocation the server no longer has is released."""
    path = f"/v1/allocate/{check_id(allocation_id, 'allocation_id')}"
    return Call("DELETE", path, None, operation=_RELEASE, absent_ok=GONE_STATUSES)


def _inference_body(
    allocation_id: str,
    prompt: str,
    model: str | None,
    max_tokens: int | None,
    temperature: float | None,
    stop: str | list[str] | None,
) -> dict[str, object]:
    check_id(allocation_id, "allocation_id")
    body: dict[str, object] = {
        "allocation_id": allocation_id,
        "prompt": check_text(prompt, "prompt"),
    }
    if check_optional_text(model, "model") is not None:
        body["model"] = model
    if check_max_tokens(max_tokens) is not None:
        body["max_tokens"] = max_tokens
    if check_temperature(temperature) is not None:
        body["temperature"] = temperature
    checked_stop = check_stop(stop)
    if checked_stop is not None:
        body["stop"] = checked_stop
    return body


def infer(
    allocation_id: str,
    prompt: str,
    model: str | None,
    max_tokens: int | None,
    temperature: float | None,
    stop: str | list[str] | None,
) -> Call[InferenceResult]:
    """``POST /v1/inference``. No ``Idempotency-Key`` on the wire for inference: a retry
    after an ambiguous failure could run (and bill) the work twice, so only clear failures
    are retried."""
    body = _inference_body(allocation_id, prompt, model, max_tokens, temperature, stop)
    return Call(
        "POST",
        "/v1/inference",
        models.parse_inference,
        operation=_INFERENCE,
        json=body,
        idempotent=False,
        model=model,
    )


def stream(
    allocation_id: str,
    prompt: str,
    model: str | None,
    max_tokens: int | None,
    temperature: float | None,
    stop: str | list[str] | None,
) -> Call[httpx.Response]:
    """``POST /v1/inference`` with ``stream: true``: the value is the unread response."""
    body = _inference_body(allocation_id, prompt, model, max_tokens, temperature, stop)
    body["stream"] = True
    return Call(
        "POST",
        "/v1/inference",
        None,
        operation=_INFERENCE,
        json=body,
        headers={"accept": "text/event-stream"},
        idempotent=False,
        stream=True,
        model=model,
    )


def list_pools() -> Call[list[Pool]]:
    """``GET /v1/pools``."""
    return Call("GET", "/v1/pools", models.parse_pools, operation=_POOLS)


def get_pool(pool_id: str) -> Call[Pool]:
    """``GET /v1/pools/{pool_id}``."""
    return Call(
        "GET", f"/v1/pools/{check_id(pool_id, 'pool_id')}", models.parse_pool, operation=_POOL
    )


def health() -> Call[Health]:
    """``GET /v1/health``."""
    return Call("GET", "/v1/health", models.parse_health, operation=_HEALTH)
