"""Reading answers: errors from statuses and transport failures, strict JSON, parsing.

Nothing here does I/O; the plan and the streams call these to turn what came back into a
value or an error from the tree in ``_exceptions.py``. It is also THE place where what a
server said is kept in an error: every text of the answer (message, code, request id, body)
is stored with the secrets its request carried masked, so a server that echoes the key back
cannot put it into an error's str, repr, pickle or traceback.
"""

from __future__ import annotations

import json
import math
import zlib
from typing import Any, TypeVar

import httpx

from .. import _models as models
from .._config import SECRET_HEADERS
from .._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    ResponseValidationError,
    UsageError,
    status_error_class,
)
from .._resilience import parse_retry_after
from .._telemetry import MASK, MIN_SECRET
from ._steps import Call, Reply

__all__ = [
    "closed_error",
    "deadline_passed",
    "decode_json",
    "invalid_answer",
    "parse_reply",
    "request_id",
    "scrub",
    "secrets_of",
    "stand_in",
    "status_error",
    "too_large_error",
    "transport_error",
    "undecodable",
]

T = TypeVar("T")


def request_id(response: httpx.Response) -> str | None:
    value: str | None = response.headers.get("x-request-id")
    return value


def secrets_of(request: httpx.Request | None) -> tuple[str, ...]:
    """The secrets ``request`` carried (the key of its ``Authorization`` header, the values of
    the other credential headers): what no error built from its answer may repeat."""
    if request is None:
        return ()
    found: list[str] = []
    for name, value in request.headers.items():
        if name in SECRET_HEADERS:
            token = value.rsplit(" ", 1)[-1]  # "Bearer <key>": the key, which masks both
            if len(token) >= MIN_SECRET and token not in found:
                found.append(token)
    return tuple(found)


def _request_of(response: httpx.Response) -> httpx.Request | None:
    try:
        return response.request
    except RuntimeError:  # a response made by hand, never sent
        return None


def scrub(value: T, secrets: tuple[str, ...]) -> T:
    """``value`` (a text, or decoded JSON) with each of ``secrets`` masked wherever it appears;
    a structure nested too deep to go through is not kept (``MASK`` stands for it)."""
    if not secrets:
        return value
    try:
        scrubbed: T = _scrub(value, secrets)
    except RecursionError:
        return MASK  # type: ignore[return-value]
    return scrubbed


def _scrub(value: Any, secrets: tuple[str, ...]) -> Any:
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, MASK)
        return value
    if isinstance(value, dict):
        return {_scrub(k, secrets): _scrub(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub(item, secrets) for item in value]
    return value


def invalid_answer(reason: str, response: httpx.Response, body: object) -> ResponseValidationError:
    """The error for an answer that breaks the contract: what the server said is kept with
    the request's secrets masked."""
    secrets = secrets_of(_request_of(response))
    return models.validation_error(
        scrub(reason, secrets),
        status_code=response.status_code,
        request_id=scrub(request_id(response), secrets),
        body=scrub(body, secrets),
    )


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
        reason = f"the body is not valid JSON ({exc})"
    shown = body[:1000]
    raise invalid_answer(
        reason, response, shown if isinstance(shown, str) else shown.decode("utf-8", "replace")
    )


def status_error(response: httpx.Response, body: bytes) -> APIStatusError:
    """The typed error for a 4xx/5xx answer, read leniently from the error envelope; every
    text of it kept with the request's secrets masked."""
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
    secrets = secrets_of(_request_of(response))
    return cls(
        scrub(message, secrets),
        status_code=response.status_code,
        request_id=scrub(answered_id, secrets),
        code=scrub(code, secrets),
        body=scrub(decoded, secrets),
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )


def closed_error() -> UsageError:
    """A call on a closed client: a mistake to fix, not a network failure to retry."""
    return UsageError("the client is closed; make a new one to send more requests")


def transport_error(exc: httpx.TransportError) -> APIConnectionError:
    """The error for a failed attempt, caused by a stand-in for ``exc`` (``stand_in``)."""
    host = _host_of(exc)
    error: APIConnectionError
    if isinstance(exc, httpx.TimeoutException):
        error = APITimeoutError(f"the request to {host} timed out ({type(exc).__name__})")
    else:
        said = scrub(str(exc), secrets_of(_request_or_none(exc)))
        if isinstance(exc, httpx.ConnectError):
            error = APIConnectionError(f"could not connect to {host}: {type(exc).__name__}: {said}")
        else:
            error = APIConnectionError(
                f"the connection to {host} failed: {type(exc).__name__}: {said}"
            )
    error.__cause__ = stand_in(exc)
    return error


def stand_in(exc: httpx.TransportError) -> httpx.TransportError:
    """``exc`` as an error may keep it: the same type and message, its request a copy with
    the secrets masked. The request itself is left as it was sent (the caller's transport
    may have kept it), and so is ``exc``, which an error no longer holds on to."""
    request = _request_or_none(exc)
    secrets = secrets_of(request)
    copy: httpx.Request | None = None
    if request is not None:
        headers = [
            (name, MASK if name in SECRET_HEADERS else value)
            for name, value in request.headers.multi_items()
        ]
        copy = httpx.Request(request.method, request.url, headers=headers)
    message = scrub(str(exc), secrets)
    try:
        twin = type(exc)(message, request=copy)
    except TypeError:  # a transport's own error class, built some other way
        twin = httpx.TransportError(message, request=copy)
    return twin


def _request_or_none(exc: httpx.TransportError) -> httpx.Request | None:
    try:
        return exc.request
    except RuntimeError:  # raised without a request
        return None


def _host_of(exc: httpx.TransportError) -> str:
    """``host:port`` the failed request went to; never the URL's user info or query."""
    request = _request_or_none(exc)
    if request is None:
        return "the API"
    url = request.url
    return url.host if url.port is None else f"{url.host}:{url.port}"


def deadline_passed(request: httpx.Request) -> httpx.ReadTimeout:
    """The outcome of an attempt cut short because the call's deadline passed."""
    return httpx.ReadTimeout("the call's deadline passed while reading", request=request)


def too_large_error(response: httpx.Response, limit: int, what: str) -> ResponseValidationError:
    reason = f"{what} is larger than {limit} bytes (max_response_bytes)"
    return invalid_answer(reason, response, None)


def undecodable(
    response: httpx.Response, exc: httpx.DecodingError | zlib.error
) -> ResponseValidationError:
    return invalid_answer(f"the body could not be decoded ({exc})", response, None)


def parse_reply(call: Call[T], reply: Reply) -> T:
    """The value a successful answer carries, parsed; a stream's response is the value."""
    response = reply.response
    if call.stream:
        return response  # type: ignore[return-value]
    if call.parse is None or response.status_code in call.absent_ok:
        return None  # type: ignore[return-value]
    if call.check is not None and not reply.body.strip():
        data: object = None  # another dialect's empty answer: its parser says what it means
    else:
        data = decode_json(reply.body, response)
    try:
        return call.parse(data, request_id(response))
    except models.InvalidPayload as exc:
        reason = str(exc)
    raise invalid_answer(reason, response, data)
