"""Faults applied to an answer, and answers encoded as bytes (bodies and event streams)."""

from __future__ import annotations

from typing import Any

from ._faults import FaultKind, InjectedFault
from ._wire import Answer, encode_json, error_answer

__all__ = ["apply_fault", "encode_body", "encode_events"]

_FAULT_ERROR_CODES = {
    500: "internal_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}
_MALFORMED_BODY = b"<html><body><h1>502 Bad Gateway</h1></body></html>"


def apply_fault(fault: InjectedFault, outcome: Answer | None, request_id: str) -> Answer | None:
    """The outcome once ``fault`` hit it (``None``: the connection drops)."""
    if fault.kind is FaultKind.DROP:
        return None
    retry_after = {} if fault.retry_after is None else {"retry-after": fault.retry_after}
    if fault.kind is FaultKind.RATE_LIMIT:
        return error_answer(
            "rate_limited", "Too many requests (injected).", request_id, headers=retry_after
        )
    if fault.kind is FaultKind.ERROR:
        status = fault.status or 500
        code = _FAULT_ERROR_CODES.get(status, "internal_error")
        return error_answer(
            code, "Injected server error.", request_id, status=status, headers=retry_after
        )
    assert outcome is not None
    if fault.kind is FaultKind.LATENCY:
        outcome.delay += fault.delay
    return outcome


def _misshape(payload: Any) -> Any:
    """Valid JSON of the wrong shape: the first field gone, numbers turned into strings."""
    if not isinstance(payload, dict):
        return {"unexpected": payload}
    return {
        key: str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
        for key, value in list(payload.items())[1:]
    }


def encode_body(payload: Any, corruption: FaultKind | None) -> bytes:
    if corruption is FaultKind.INVALID_SCHEMA:
        payload = _misshape(payload)
    body = encode_json(payload)
    if corruption is FaultKind.MALFORMED:
        return _MALFORMED_BODY
    if corruption is FaultKind.TRUNCATE:
        return body[: len(body) // 2]
    return body


def encode_events(events: list[Any], corruption: FaultKind | None) -> list[bytes]:
    if corruption is FaultKind.TRUNCATE:
        events, corruption = events[: len(events) // 2], None
    chunks = []
    for event in events:
        data = event.encode() if isinstance(event, str) else encode_body(event, corruption)
        chunks.append(b"data: " + data + b"\n\n")
    return chunks
