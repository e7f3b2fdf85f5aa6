"""Reading answers: errors from statuses and transport failures, strict JSON, parsing.

Nothing here does I/O; the plan and the streams call these to turn what came back into a
value or an error from the tree in ``_exceptions.py``.
"""

from __future__ import annotations

import json
import math
import zlib
from typing import TypeVar

import httpx

from .. import _models as models
from .._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ResponseValidationError,
    status_error_class,
)
from .._resilience import parse_retry_after
from ._steps import Call, Reply

__all__ = [
    "closed_error",
    "deadline_passed",
    "decode_json",
    "parse_reply",
    "redact",
    "request_id",
    "status_error",
    "too_large_error",
    "transport_error",
    "undecodable",
]

T = TypeVar("T")


def request_id(response: httpx.Response) -> str | None:
    value: str | None = response.headers.get("x-request-id")
    return value


def _not_json(constant: str) -> object:
    raise ValueError(f"{constant} is not a JSON value")


def _finite(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):  # 1e999: valid JSON syntax, but no number a float holds
        raise ValueError(f"{text} is out of range")
    return number


# Strict JSON: NaN and Infinity, which Python would accept, are not JSON, and numbers too
# large for a float are refused rather than read as infinity.
_json_decode = json.JSONDecoder(parse_constant=_not_json, parse_float=_finite).decode


def decode_json(body: bytes | str, response: httpx.Response) -> object:
    try:  # a UnicodeDecodeError is a ValueError; RecursionError: absurdly deep nesting
        return _json_decode(body if isinstance(body, str) else body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        shown = body[:1000]
        raise models.validation_error(
            f"the body is not valid JSON ({exc})",
            status_code=response.status_code,
            request_id=request_id(response),
            body=shown if isinstance(shown, str) else shown.decode("utf-8", "replace"),
        ) from None


def status_error(response: httpx.Response, body: bytes) -> APIStatusError:
    """The typed error for a 4xx/5xx answer, read leniently from the error envelope."""
    answered_id = request_id(response)
    decoded: object = body[:64_000].decode("utf-8", "replace")
    code: str | None = None
    message = f"HTTP {response.status_code} {response.reason_phrase}".strip()
    try:
        decoded = json.loads(body)
    except (ValueError, RecursionError):
        pass
    else:
        error = decoded.get("error") if type(decoded) is dict else None
        if type(error) is dict:
            if type(error.get("code")) is str:
                code = error["code"]
            if type(error.get("message")) is str and error["message"]:
                message = error["message"]
            if answered_id is None and type(error.get("request_id")) is str:
                answered_id = error["request_id"]
    cls = status_error_class(response.status_code, code)
    return cls(
        message,
        status_code=response.status_code,
        request_id=answered_id,
        code=code,
        body=decoded,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )


def closed_error() -> APIConnectionError:
    return APIConnectionError("the client is closed; make a new one to send more requests")


def transport_error(exc: httpx.TransportError) -> APIConnectionError:
    host = _host_of(exc)
    if isinstance(exc, httpx.TimeoutException):
        return APITimeoutError(f"the request to {host} timed out ({type(exc).__name__})")
    if isinstance(exc, httpx.ConnectError):
        return APIConnectionError(f"could not connect to {host}: {type(exc).__name__}: {exc}")
    return APIConnectionError(f"the connection to {host} failed: {type(exc).__name__}: {exc}")


def _host_of(exc: httpx.TransportError) -> str:
    """``host:port`` the failed request went to; never the URL's user info or query."""
    try:
        url = exc.request.url
    except RuntimeError:  # raised without a request
        return "the API"
    return url.host if url.port is None else f"{url.host}:{url.port}"


def deadline_passed(request: httpx.Request) -> httpx.ReadTimeout:
    """The outcome of an attempt cut short because the call's deadline passed."""
    return httpx.ReadTimeout("the call's deadline passed while reading", request=request)


def too_large_error(response: httpx.Response, limit: int, what: str) -> ResponseValidationError:
    return models.validation_error(
        f"{what} is larger than {limit} bytes (max_response_bytes)",
        status_code=response.status_code,
        request_id=request_id(response),
        body=None,
    )


def undecodable(
    response: httpx.Response, exc: httpx.DecodingError | zlib.error
) -> ResponseValidationError:
    return models.validation_error(
        f"the body could not be decoded ({exc})",
        status_code=response.status_code,
        request_id=request_id(response),
        body=None,
    )


def redact(request: httpx.Request) -> None:
    """Blank the key in a spent request: httpx errors, a streamed response and whatever
    holds on to them keep the request."""
    if "authorization" in request.headers:
        request.headers["authorization"] = "Bearer [redacted]"


def parse_reply(call: Call[T], reply: Reply) -> T:
    """The value a successful answer carries, parsed; a stream's response is the value."""
    response = reply.response
    if call.stream:
        return response  # type: ignore[return-value]
    if call.parse is None or response.status_code in call.absent_ok:
        return None  # type: ignore[return-value]
    data = decode_json(reply.body, response)
    try:
        return call.parse(data, request_id(response))
    except models.InvalidPayload as exc:
        raise models.validation_error(
            str(exc),
            status_code=response.status_code,
            request_id=request_id(response),
            body=data,
        ) from None
