"""The emulator's sans-I/O vocabulary: requests in, replies out, and the error table."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Protocol

import attrs

__all__ = [
    "ERROR_TYPES",
    "Answer",
    "EventStream",
    "Reply",
    "Request",
    "WireError",
    "check_delay",
    "encode_json",
    "error_answer",
    "parse_json_object",
]

ERROR_TYPES: Mapping[str, tuple[int, str]] = {
    "invalid_json": (400, "invalid_request_error"),
    "invalid_request": (400, "invalid_request_error"),
    "missing_api_key": (401, "authentication_error"),
    "invalid_api_key": (401, "authentication_error"),
    "allocation_not_found": (404, "not_found_error"),
    "pool_not_found": (404, "not_found_error"),
    "route_not_found": (404, "not_found_error"),
    "model_not_found": (404, "invalid_request_error"),
    "method_not_allowed": (405, "invalid_request_error"),
    "idempotency_conflict": (409, "conflict_error"),
    "allocation_not_ready": (409, "conflict_error"),
    "allocation_expired": (410, "gone_error"),
    "allocation_released": (410, "gone_error"),
    "allocation_failed": (410, "gone_error"),
    "validation_error": (422, "invalid_request_error"),
    "unknown_pool": (422, "invalid_request_error"),
    "unknown_model": (422, "invalid_request_error"),
    "gpu_type_unavailable": (422, "invalid_request_error"),
    "exceeds_pool_size": (422, "invalid_request_error"),
    "model_mismatch": (422, "invalid_request_error"),
    "invalid_idempotency_key": (422, "invalid_request_error"),
    "rate_limited": (429, "rate_limit_error"),
    "internal_error": (500, "api_error"),
    "bad_gateway": (502, "api_error"),
    "capacity_exhausted": (503, "capacity_error"),
    "service_unavailable": (503, "api_error"),
    "gateway_timeout": (504, "api_error"),
}
"""Every error code of the wire contract, with its HTTP status and error type."""


class WireError(Exception):
    """An error answer: raised by a handler, turned into the error envelope."""

    def __init__(
        self,
        code: str,
        message: str,
        *,
        status: int | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = ERROR_TYPES[code][0] if status is None else status
        self.headers = dict(headers or {})


@attrs.frozen
class Request:
    """One HTTP request as the emulator sees it; header names are lower-case."""

    method: str
    path: str
    query: str = ""
    headers: Mapping[str, str] = attrs.field(factory=dict)
    body: bytes = b""


@attrs.define
class Answer:
    """What a handler answered, before faults and encoding.

    ``payload`` is the JSON body (``None``: no body); ``events`` the payloads of a
    server-sent event stream (the string ``"[DONE]"`` included verbatim).
    """

    status: int
    payload: Any = None
    headers: dict[str, str] = attrs.field(factory=dict)
    events: list[Any] | None = None
    delay: float = 0.0
    allocation_id: str | None = None


class EventStream:
    """The body of a server-sent event reply, handed out chunk by chunk.

    ``delay`` is how long a server waits between two chunks. Closing the stream before
    its last chunk was taken counts as an aborted stream.
    """

    def __init__(
        self, chunks: list[bytes], delay: float, on_end: Callable[[bytes, bool], None]
    ) -> None:
        self.delay = delay
        self._chunks = chunks
        self._position = 0
        self._on_end: Callable[[bytes, bool], None] | None = on_end

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        if self._on_end is None or self._position >= len(self._chunks):
            raise StopIteration
        chunk = self._chunks[self._position]
        self._position += 1
        if self._position == len(self._chunks):
            self._end(completed=True)
        return chunk

    def close(self) -> None:
        """Stop the stream; before the last chunk this is an abort."""
        self._end(completed=False)

    def _end(self, *, completed: bool) -> None:
        on_end, self._on_end = self._on_end, None
        if on_end is not None:
            on_end(b"".join(self._chunks[: self._position]), completed)


@attrs.frozen
class Reply:
    """What a transport must do: after ``delay`` seconds, answer with ``body`` (or ``stream``),
    or, when ``status`` is ``None``, drop the connection without an answer."""

    status: int | None
    headers: Mapping[str, str]
    body: bytes = b""
    stream: EventStream | None = None
    delay: float = 0.0
    on_lost: Callable[[], None] | None = attrs.field(default=None, eq=False, repr=False)
    """Called by a server that could not send this answer after all (it shut down)."""


class Handler(Protocol):
    """What the adapters (the in-process transports, the ASGI app) serve: something that
    answers a request. The :class:`Emulator` is one; the adapters need know nothing else."""

    def handle(self, request: Request) -> Reply:
        """Answer one request."""
        ...


def check_delay(name: str, value: object) -> None:
    """Refuse a delay that is not a finite, non-negative number of seconds."""
    if not (
        (is_int(value) or isinstance(value, float))
        and math.isfinite(value)  # type: ignore[arg-type]
        and value >= 0  # type: ignore[operator]
    ):
        raise ValueError(f"{name} must be a finite number of seconds >= 0, got {value!r}")


def error_answer(
    code: str,
    message: str,
    request_id: str,
    *,
    status: int | None = None,
    headers: Mapping[str, str] | None = None,
) -> Answer:
    """The error envelope for ``code``."""
    status = ERROR_TYPES[code][0] if status is None else status
    payload = {
        "error": {
            "type": ERROR_TYPES[code][1],
            "code": code,
            "message": message,
            "request_id": request_id,
        }
    }
    return Answer(status, payload, dict(headers or {}))


def encode_json(payload: Any) -> bytes:
    """Compact UTF-8 JSON."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def _reject_constant(name: str) -> float:
    raise ValueError(f"{name} is not JSON")


# A \uD800-\uDFFF escape: the only way a strictly UTF-8 body can carry a surrogate.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")


def _has_lone_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode()
    except (UnicodeEncodeError, RecursionError):
        return True
    return False


def parse_json_object(body: bytes, *, empty_ok: bool = False) -> dict[str, Any]:
    """The request body as a JSON object (strict UTF-8), or a 400 ``invalid_json``.

    Strings holding a lone surrogate (``"\\ud800"``) are refused: no UTF-8 text has one.
    """
    if empty_ok and not body.strip():
        return {}
    try:
        text = body.decode("utf-8")
        value = json.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:  # UnicodeDecodeError and JSONDecodeError included
        raise WireError("invalid_json", f"The body is not valid JSON: {exc}") from None
    except RecursionError:
        raise WireError("invalid_json", "The body is nested too deeply.") from None
    if not isinstance(value, dict):
        raise WireError("invalid_json", "The body must be a JSON object.")
    if _SURROGATE_ESCAPE.search(text) and _has_lone_surrogate(value):
        raise WireError("invalid_json", "The body has a string with a lone UTF-16 surrogate.")
    return value


def is_int(value: object) -> bool:
    """Whether a JSON value is an integer (``true`` is not)."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value: object) -> bool:
    """Whether a JSON value is a finite number (``true`` is not)."""
    return is_int(value) or (isinstance(value, float) and math.isfinite(value))
