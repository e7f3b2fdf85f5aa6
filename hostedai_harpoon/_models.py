"""The values that cross the wire: frozen attrs classes and one parser for each.

Parsers take decoded JSON and raise ``ResponseValidationError`` when it breaks the contract;
unknown extra fields are ignored. They check exactly what they read and nothing more.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import attrs

from ._exceptions import ResponseValidationError

__all__ = [
    "Allocation",
    "AllocationStatus",
    "Health",
    "InferenceChunk",
    "InferenceResult",
    "Pool",
    "Usage",
]

FinishReason = Literal["stop", "length"]


class AllocationStatus(enum.StrEnum):
    """Where an allocation is in its life; compares equal to its wire string (``"ready"``).

    Legal transitions (server side)::

        PENDING   -> READY      the GPUs came up
        PENDING   -> FAILED     they never will (or a test failed it in the emulator)
        READY     -> FAILED     idem
        PENDING   -> RELEASING  released before it was ready
        READY     -> RELEASING  released
        RELEASING -> RELEASED   the GPUs are free again (the emulator skips RELEASING)
        PENDING   -> EXPIRED    the TTL ran out
        READY     -> EXPIRED    the TTL ran out

    PENDING, READY and RELEASING hold GPUs; the others are final and hold none.
    """

    PENDING = "pending"
    READY = "ready"
    RELEASING = "releasing"
    RELEASED = "released"
    FAILED = "failed"
    EXPIRED = "expired"

    @property
    def live(self) -> bool:
        """Whether an allocation in this state holds GPUs."""
        return self in _LIVE


_LIVE = frozenset({AllocationStatus.PENDING, AllocationStatus.READY, AllocationStatus.RELEASING})


@attrs.frozen
class Allocation:
    """GPUs held in a pool for one model."""

    id: str
    pool_id: str
    model: str
    gpu_count: int
    gpu_type: str | None
    status: AllocationStatus
    endpoint: str | None
    created_at: datetime
    expires_at: datetime | None
    ttl_seconds: int | None
    request_id: str | None = attrs.field(default=None, eq=False)


@attrs.frozen
class Usage:
    """Tokens read and written by one inference."""

    input_tokens: int
    output_tokens: int

    @property
    def total_tokens(self) -> int:
        """Input and output tokens together."""
        return self.input_tokens + self.output_tokens


@attrs.frozen
class InferenceResult:
    """The answer of one inference. ``latency`` is the server-side time, in seconds."""

    id: str
    allocation_id: str
    model: str
    text: str
    finish_reason: FinishReason
    usage: Usage
    latency: float
    request_id: str | None = attrs.field(default=None, eq=False)


@attrs.frozen
class InferenceChunk:
    """One event of a streamed inference.

    ``delta`` is the next piece of text. The last chunk has ``finish_reason`` and ``usage``
    set (and an empty ``delta``); the others have them ``None``.
    """

    id: str
    delta: str
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    latency: float | None = None
    request_id: str | None = attrs.field(default=None, eq=False)


@attrs.frozen
class Pool:
    """A pool of GPUs and the models it serves."""

    id: str
    gpu_type: str
    gpus_total: int
    gpus_free: int
    models: tuple[str, ...]
    default: bool
    request_id: str | None = attrs.field(default=None, eq=False)


@attrs.frozen
class Health:
    """The service's health: ``status`` is ``"ok"`` or ``"degraded"``."""

    status: Literal["ok", "degraded"]
    version: str
    request_id: str | None = attrs.field(default=None, eq=False)


# Parsing ---------------------------------------------------------------------------------


class InvalidPayload(Exception):
    """What was wrong with a payload; the client turns it into ``ResponseValidationError``."""


def _obj(value: object, what: str) -> Mapping[str, Any]:
    if type(value) is not dict:
        raise InvalidPayload(f"{what} is not a JSON object")
    return value


def _str(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    if type(value) is not str:
        raise InvalidPayload(f"field {key!r} must be a string, got {_kind(value)}")
    return value


def _opt_str(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    if value is not None and type(value) is not str:
        raise InvalidPayload(f"field {key!r} must be a string or null, got {_kind(value)}")
    return value


def _int(data: Mapping[str, Any], key: str) -> int:
    value = data.get(key)
    if type(value) is not int or value < 0:
        raise InvalidPayload(f"field {key!r} must be a non-negative integer, got {_kind(value)}")
    return value


def _opt_int(data: Mapping[str, Any], key: str) -> int | None:
    if data.get(key) is None:
        return None
    return _int(data, key)


def _number(data: Mapping[str, Any], key: str) -> float:
    value = data.get(key)
    if (type(value) is not int and type(value) is not float) or not value >= 0:
        raise InvalidPayload(f"field {key!r} must be a non-negative number, got {_kind(value)}")
    return float(value)


def _bool(data: Mapping[str, Any], key: str) -> bool:
    value = data.get(key)
    if type(value) is not bool:
        raise InvalidPayload(f"field {key!r} must be a boolean, got {_kind(value)}")
    return value


def _time(data: Mapping[str, Any], key: str) -> datetime:
    text = _str(data, key)
    try:
        return datetime.fromisoformat(text)
    except ValueError:
        raise InvalidPayload(f"field {key!r} is not an RFC 3339 timestamp: {text[:40]!r}") from None


def _opt_time(data: Mapping[str, Any], key: str) -> datetime | None:
    if data.get(key) is None:
        return None
    return _time(data, key)


def _choice(data: Mapping[str, Any], key: str, choices: frozenset[str]) -> str:
    value = _str(data, key)
    if value not in choices:
        raise InvalidPayload(f"field {key!r} has unknown value {value[:40]!r}")
    return value


def _kind(value: object) -> str:
    return "null" if value is None else type(value).__name__


_STATUSES = {status.value: status for status in AllocationStatus}
_FINISH_REASONS = frozenset({"stop", "length"})
_HEALTH_STATUSES = frozenset({"ok", "degraded"})


def parse_allocation(data: object, request_id: str | None) -> Allocation:
    d = _obj(data, "allocation")
    status = _STATUSES.get(_str(d, "status"))
    if status is None:
        raise InvalidPayload(f"field 'status' has unknown value {d['status'][:40]!r}")
    return Allocation(
        id=_str(d, "id"),
        pool_id=_str(d, "pool_id"),
        model=_str(d, "model"),
        gpu_count=_int(d, "gpu_count"),
        gpu_type=_opt_str(d, "gpu_type"),
        status=status,
        endpoint=_opt_str(d, "endpoint"),
        created_at=_time(d, "created_at"),
        expires_at=_opt_time(d, "expires_at"),
        ttl_seconds=_opt_int(d, "ttl_seconds"),
        request_id=request_id,
    )


def _usage(data: object) -> Usage:
    d = _obj(data, "usage")
    return Usage(input_tokens=_int(d, "input_tokens"), output_tokens=_int(d, "output_tokens"))


def parse_inference(data: object, request_id: str | None) -> InferenceResult:
    if type(data) is dict:  # the checks below in one test, for an answer that passes them
        usage, latency = data.get("usage"), data.get("latency_ms")
        if (
            type(data.get("id")) is str
            and type(data.get("allocation_id")) is str
            and type(data.get("model")) is str
            and type(data.get("text")) is str
            and type(data.get("finish_reason")) is str
            and data["finish_reason"] in _FINISH_REASONS
            and type(usage) is dict
            and type(usage.get("input_tokens")) is int
            and usage["input_tokens"] >= 0
            and type(usage.get("output_tokens")) is int
            and usage["output_tokens"] >= 0
            and (type(latency) is float or type(latency) is int)
            and latency >= 0
        ):
            return InferenceResult(
                id=data["id"],
                allocation_id=data["allocation_id"],
                model=data["model"],
                text=data["text"],
                finish_reason=data["finish_reason"],
                usage=Usage(
                    input_tokens=usage["input_tokens"], output_tokens=usage["output_tokens"]
                ),
                latency=latency / 1000.0,
                request_id=request_id,
            )
    d = _obj(data, "inference result")
    return InferenceResult(
        id=_str(d, "id"),
        allocation_id=_str(d, "allocation_id"),
        model=_str(d, "model"),
        text=_str(d, "text"),
        finish_reason=_choice(d, "finish_reason", _FINISH_REASONS),  # type: ignore[arg-type]
        usage=_usage(d.get("usage")),
        latency=_number(d, "latency_ms") / 1000.0,
        request_id=request_id,
    )


def parse_chunk(data: object, request_id: str | None) -> InferenceChunk:
    d = _obj(data, "stream event")
    if d.get("finish_reason") is None:
        return InferenceChunk(id=_str(d, "id"), delta=_str(d, "delta"), request_id=request_id)
    latency = None if d.get("latency_ms") is None else _number(d, "latency_ms") / 1000.0
    return InferenceChunk(
        id=_str(d, "id"),
        delta=_str(d, "delta"),
        finish_reason=_choice(d, "finish_reason", _FINISH_REASONS),  # type: ignore[arg-type]
        usage=_usage(d.get("usage")),
        latency=latency,
        request_id=request_id,
    )


def parse_pool(data: object, request_id: str | None) -> Pool:
    d = _obj(data, "pool")
    models = d.get("models")
    if type(models) is not list or any(type(m) is not str for m in models):
        raise InvalidPayload("field 'models' must be a list of strings")
    return Pool(
        id=_str(d, "id"),
        gpu_type=_str(d, "gpu_type"),
        gpus_total=_int(d, "gpus_total"),
        gpus_free=_int(d, "gpus_free"),
        models=tuple(models),
        default=_bool(d, "default"),
        request_id=request_id,
    )


def parse_health(data: object, request_id: str | None) -> Health:
    d = _obj(data, "health")
    return Health(
        status=_choice(d, "status", _HEALTH_STATUSES),  # type: ignore[arg-type]
        version=_str(d, "version"),
        request_id=request_id,
    )


def _data_list(data: object) -> list[Any]:
    items = _obj(data, "list").get("data")
    if type(items) is not list:
        raise InvalidPayload("field 'data' must be a list")
    return items


def parse_allocations(data: object, request_id: str | None) -> list[Allocation]:
    return [parse_allocation(item, request_id) for item in _data_list(data)]


def parse_pools(data: object, request_id: str | None) -> list[Pool]:
    return [parse_pool(item, request_id) for item in _data_list(data)]


def validation_error(
    reason: str, *, status_code: int | None, request_id: str | None, body: object
) -> ResponseValidationError:
    """The error for a server answer that breaks the contract."""
    return ResponseValidationError(
        f"the server's answer breaks the API contract: {reason}",
        status_code=status_code,
        request_id=request_id,
        body=body,
    )
