"""The HostedAI clients: ``BaseClient`` decides, ``HostedAI`` and ``AsyncHostedAI`` only send.

Every call is a *plan*: a generator in ``BaseClient`` that builds each attempt, asks the
breaker, reads the outcome, decides whether to retry and how long to wait, and parses the
answer. It yields two kinds of action, "send this request" and "sleep this long"; the sync
client carries them out with ``httpx.Client`` and ``time.sleep``, the async one with
``httpx.AsyncClient`` and ``asyncio.sleep``. Nothing else differs between the twins.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator, Mapping
from datetime import timedelta
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, NoReturn, Self, TypeVar

import attrs
import httpx

from . import _models as models
from ._allocation import (
    DEFAULT_CAPACITY_TIMEOUT,
    DEFAULT_LEASE_TTL,
    DEFAULT_READY_TIMEOUT,
    DEFAULT_RELEASE_TIMEOUT,
    AsyncLease,
    Lease,
    OrphanedAllocation,
    OrphanLedger,
    Sleep,
    adrive,
    drive,
    release_orphan_flow,
)
from ._checks import (
    check_gpus,
    check_id,
    check_idempotency_key,
    check_max_tokens,
    check_optional_text,
    check_seconds,
    check_stop,
    check_temperature,
    check_text,
    ttl_seconds,
)
from ._config import (
    DEFAULT_MAX_RESPONSE_BYTES,
    DEFAULT_MAX_RETRIES,
    DEFAULT_TIMEOUT,
    NOT_GIVEN,
    NotGiven,
    Settings,
    new_idempotency_key,
    resolve_settings,
)
from ._exceptions import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    CapacityError,
    CircuitOpenError,
    ConfigurationError,
    HostedAIError,
    ResponseValidationError,
    UsageError,
    status_error_class,
)
from ._models import Allocation, Health, InferenceChunk, InferenceResult, Pool
from ._resilience import (
    CircuitBreaker,
    CircuitBreakerConfig,
    RetryPolicy,
    is_retryable_status,
    is_retryable_transport_error,
    parse_retry_after,
)
from ._version import __version__

if TYPE_CHECKING:
    import asyncio

__all__ = ["AsyncHostedAI", "AsyncInferenceStream", "HostedAI", "InferenceStream"]

log = logging.getLogger("hostedai_harpoon")

T = TypeVar("T")
HttpT = TypeVar("HttpT", httpx.Client, httpx.AsyncClient)
LeaseT = TypeVar("LeaseT", Lease, AsyncLease)

# Releasing is worth more patience than an ordinary call.
_RELEASE_RETRY = RetryPolicy(max_retries=6, initial_backoff=0.1, max_backoff=2.0)

USER_AGENT = f"hostedai-harpoon/{__version__} python-httpx/{httpx.__version__}"


# A release answered with these found nothing left to release.
_GONE = frozenset({404, 410})


# Plans and their actions -------------------------------------------------------------------


class _Call(Generic[T]):
    """One API call as the plan sees it."""

    __slots__ = (
        "absent_ok",
        "headers",
        "idempotent",
        "json",
        "method",
        "params",
        "parse",
        "path",
        "retry_capacity",
        "stream",
    )

    def __init__(
        self,
        method: str,
        path: str,
        parse: Callable[[object, str | None], T] | None,
        *,
        json: object = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        idempotent: bool = True,
        stream: bool = False,
        absent_ok: bool = False,
        retry_capacity: bool = True,
    ) -> None:
        self.method = method
        self.path = path
        self.parse = parse
        self.json = json
        self.params = params
        self.headers = headers
        self.idempotent = idempotent
        self.stream = stream
        # A 404 means "already done" (releasing an allocation).
        self.absent_ok = absent_ok
        # False when the caller waits out full pools itself (a lease, within its own budget).
        self.retry_capacity = retry_capacity


class _Send:
    """Action: send this request (keep the body unread when streaming), and be done with it,
    body read, by ``deadline_at`` (a ``time.monotonic()`` value, ``None``: no deadline)."""

    __slots__ = ("deadline_at", "request", "stream")

    def __init__(self, request: httpx.Request, stream: bool, deadline_at: float | None) -> None:
        self.request = request
        self.stream = stream
        self.deadline_at = deadline_at


class _Reply:
    """What came back from one attempt: the response and, unless streaming, its body."""

    __slots__ = ("body", "response")

    def __init__(self, response: httpx.Response, body: bytes) -> None:
        self.response = response
        self.body = body


_Action = _Send | Sleep
_Outcome = _Reply | httpx.TransportError | None
_Plan = Generator[_Action, _Outcome, T]


def _request_id(response: httpx.Response) -> str | None:
    value: str | None = response.headers.get("x-request-id")
    return value


def _not_json(constant: str) -> object:
    raise ValueError(f"{constant} is not a JSON value")


# Strict JSON: NaN and Infinity, which Python would accept, are not JSON.
_json_decode = json.JSONDecoder(parse_constant=_not_json).decode


def _decode_json(body: bytes | str, response: httpx.Response) -> object:
    try:  # a UnicodeDecodeError is a ValueError; RecursionError: absurdly deep nesting
        return _json_decode(body if isinstance(body, str) else body.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        shown = body[:1000]
        raise models.validation_error(
            f"the body is not valid JSON ({exc})",
            status_code=response.status_code,
            request_id=_request_id(response),
            body=shown if isinstance(shown, str) else shown.decode("utf-8", "replace"),
        ) from None


def _status_error(response: httpx.Response, body: bytes) -> APIStatusError:
    """The typed error for a 4xx/5xx answer, read leniently from the error envelope."""
    request_id = _request_id(response)
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
            if request_id is None and type(error.get("request_id")) is str:
                request_id = error["request_id"]
    cls = status_error_class(response.status_code, code)
    return cls(
        message,
        status_code=response.status_code,
        request_id=request_id,
        code=code,
        body=decoded,
        retry_after=parse_retry_after(response.headers.get("retry-after")),
    )


def _closed_error() -> APIConnectionError:
    return APIConnectionError("the client is closed; make a new one to send more requests")


def _transport_error(exc: httpx.TransportError) -> APIConnectionError:
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


def _deadline_passed(request: httpx.Request) -> httpx.ReadTimeout:
    """The outcome of an attempt cut short because the call's deadline passed."""
    return httpx.ReadTimeout("the call's deadline passed while reading", request=request)


def _clip_reads(request: httpx.Request, deadline_at: float) -> None:
    """Make the reads still to come on ``request`` end by ``deadline_at`` at the latest.

    httpcore takes the read timeout from the request when it starts reading the body, so
    clipping it here bounds a body that stalls after its headers.
    """
    timeouts = dict(request.extensions.get("timeout", {}))
    remaining = max(deadline_at - time.monotonic(), 0.001)
    read = timeouts.get("read")
    timeouts["read"] = remaining if read is None else min(read, remaining)
    request.extensions["timeout"] = timeouts


def _too_large_error(response: httpx.Response, limit: int, what: str) -> ResponseValidationError:
    return models.validation_error(
        f"{what} is larger than {limit} bytes (max_response_bytes)",
        status_code=response.status_code,
        request_id=_request_id(response),
        body=None,
    )


# Decoded bytes come out of an inflater in pieces of at most this size, so that one small
# compressed chunk cannot inflate into a huge string before its size is checked.
_PIECE = 1 << 20


class _Inflater:
    """One gzip or deflate layer of a body, inflated a bounded piece at a time."""

    __slots__ = ("_fallback", "_fed", "_started", "_zlib")

    def __init__(self, wbits: int, fallback: int | None = None) -> None:
        self._zlib = zlib.decompressobj(wbits)
        # "deflate" is meant to be zlib-wrapped, but some servers send it raw.
        self._fallback = fallback
        self._started = False
        self._fed = False

    def inflate(self, data: bytes) -> Iterator[bytes]:
        self._fed = self._fed or bool(data)
        if not self._started and self._fallback is not None:
            try:
                out = self._zlib.decompress(data, _PIECE)
            except zlib.error:
                self._zlib = zlib.decompressobj(self._fallback)
                out = self._zlib.decompress(data, _PIECE)
            self._started = True
            data = self._zlib.unconsumed_tail
            if out:
                yield out
        self._started = True
        while data:
            out = self._zlib.decompress(data, _PIECE)
            data = self._zlib.unconsumed_tail
            if out:
                yield out

    def flush(self) -> bytes:
        rest = self._zlib.flush()
        if self._fed and not self._zlib.eof:
            raise zlib.error("the compressed body ended before its end marker")
        return rest


class _Decoding:
    """Undoes a body's ``Content-Encoding`` as its raw bytes arrive, in bounded pieces.

    gzip and deflate are inflated here (``raw`` is True: feed it ``iter_raw()``); for any
    other encoding httpx decodes (feed it ``iter_bytes()``), which bounds each raw chunk's
    output only by what that chunk inflates to.
    """

    __slots__ = ("_response", "_stages", "raw")

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._stages: list[_Inflater] = []
        # A body an in-memory transport handed over whole is read already.
        self.raw = not response.is_stream_consumed
        encoding = response.headers.get("content-encoding")
        if encoding is None or not self.raw:
            return
        for name in reversed(encoding.split(",")):
            name = name.strip().lower()
            if name == "gzip":
                self._stages.append(_Inflater(zlib.MAX_WBITS | 16))
            elif name == "deflate":
                self._stages.append(_Inflater(zlib.MAX_WBITS, fallback=-zlib.MAX_WBITS))
            elif name not in ("identity", ""):
                self._stages.clear()
                self.raw = False
                return

    def decode(self, data: bytes) -> Iterator[bytes]:
        """The decoded pieces of the next raw chunk."""
        if not self._stages:
            if data:
                yield data
            return
        try:
            yield from self._through(data, 0)
        except zlib.error as exc:
            error = exc
        else:
            return
        raise _undecodable(self._response, error)

    def finish(self) -> Iterator[bytes]:
        """What the decoders still hold once the body ended."""
        for index, stage in enumerate(self._stages):
            try:
                rest = stage.flush()
            except zlib.error as exc:
                error = exc
            else:
                yield from self._through(rest, index + 1)
                continue
            raise _undecodable(self._response, error)

    def _through(self, data: bytes, first: int) -> Iterator[bytes]:
        if first == len(self._stages):
            if data:
                yield data
            return
        for piece in self._stages[first].inflate(data):
            yield from self._through(piece, first + 1)


class _Body:
    """A non-streamed body, decoded as it arrives and refused past ``limit`` decoded bytes."""

    __slots__ = ("_chunks", "_limit", "_made", "_response", "decoding", "loaded")

    def __init__(self, response: httpx.Response, limit: int) -> None:
        self._response = response
        self._limit = limit
        self.loaded: bytes | None = None
        if response.is_stream_consumed:  # an in-memory transport handed it over whole
            self.loaded = response.content
            if len(self.loaded) > limit:
                raise _too_large_error(response, limit, "the body")
            return
        length = response.headers.get("content-length")
        if length is not None and length.isascii() and length.isdigit() and int(length) > limit:
            raise _too_large_error(response, limit, "the body")
        self._made = 0
        self._chunks: list[bytes] = []
        self.decoding = _Decoding(response)

    def feed(self, data: bytes) -> None:
        """Take the next chunk (raw when ``decoding.raw``, else decoded by httpx)."""
        for piece in self.decoding.decode(data):
            self._add(piece)

    def finish(self) -> bytes:
        """The whole decoded body."""
        for piece in self.decoding.finish():
            self._add(piece)
        return b"".join(self._chunks)

    def _add(self, piece: bytes) -> None:
        self._made += len(piece)
        if self._made > self._limit:
            raise _too_large_error(self._response, self._limit, "the body")
        self._chunks.append(piece)


def _undecodable(
    response: httpx.Response, exc: httpx.DecodingError | zlib.error
) -> ResponseValidationError:
    return models.validation_error(
        f"the body could not be decoded ({exc})",
        status_code=response.status_code,
        request_id=_request_id(response),
        body=None,
    )


def _redact(request: httpx.Request) -> None:
    """Blank the key in a spent request: httpx errors, a streamed response and whatever
    holds on to them keep the request."""
    request.headers["authorization"] = "Bearer [redacted]"


def _retry_policy(policy: RetryPolicy, max_retries: int) -> RetryPolicy:
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigurationError(f"max_retries must be an integer >= 0, got {max_retries!r}")
    return attrs.evolve(policy, max_retries=max_retries)


def _resolve_retry(retry: RetryPolicy | None, max_retries: int) -> RetryPolicy:
    """``max_retries`` is a shorthand for ``retry=RetryPolicy(max_retries=...)``; a policy
    given in full wins over the default ``max_retries``, and a different explicit count
    alongside it is refused rather than silently preferred."""
    if retry is None:
        return _retry_policy(RetryPolicy(), max_retries)
    if not isinstance(retry, RetryPolicy):
        raise ConfigurationError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
    if max_retries not in (DEFAULT_MAX_RETRIES, retry.max_retries):
        raise ConfigurationError(
            f"max_retries={max_retries!r} contradicts retry=RetryPolicy(max_retries="
            f"{retry.max_retries}); pass only one of them"
        )
    return retry


def _pick_timeout(timeout: float | httpx.Timeout | None) -> httpx.Timeout:
    if isinstance(timeout, httpx.Timeout):
        return timeout
    if timeout is not None:
        check_seconds(timeout, "timeout")
    return httpx.Timeout(timeout)


def _clip(timeout: httpx.Timeout, remaining: float) -> httpx.Timeout:
    def clip(value: float | None) -> float:
        return remaining if value is None else min(value, remaining)

    return httpx.Timeout(
        connect=clip(timeout.connect),
        read=clip(timeout.read),
        write=clip(timeout.write),
        pool=clip(timeout.pool),
    )


# The shared core ---------------------------------------------------------------------------


class BaseClient(Generic[HttpT, LeaseT]):
    """Configuration, request building, retry/breaker decisions and parsing for both clients."""

    _http: HttpT
    _lease_class: Callable[..., LeaseT]

    def __init__(
        self,
        base_url: str | None,
        api_key: str | None,
        pool_id: str | None,
        *,
        timeout: float | httpx.Timeout | None,
        max_retries: int,
        deadline: float | None,
        retry: RetryPolicy | None,
        circuit_breaker: CircuitBreakerConfig | NotGiven | None,
        allow_insecure_http: bool,
        default_headers: Mapping[str, str] | None,
        max_response_bytes: int,
        max_allocations_per_pool: int | None,
    ) -> None:
        self._settings: Settings = resolve_settings(
            base_url, api_key, pool_id, allow_insecure_http=allow_insecure_http
        )
        if pool_id is not None:
            check_id(pool_id, "pool_id")
        self._timeout = _pick_timeout(timeout)
        self._deadline = self._check_deadline(deadline)
        self._retry = _resolve_retry(retry, max_retries)
        self._breaker_config: CircuitBreakerConfig | None = (
            CircuitBreakerConfig() if isinstance(circuit_breaker, NotGiven) else circuit_breaker
        )
        self._breakers: dict[str, CircuitBreaker] = {}
        if (
            isinstance(max_response_bytes, bool)
            or not isinstance(max_response_bytes, int)
            or max_response_bytes < 1
        ):
            raise ConfigurationError(
                f"max_response_bytes must be a positive integer, got {max_response_bytes!r}"
            )
        self._max_response_bytes = max_response_bytes
        self._owns_http = True
        if default_headers is not None and not all(
            isinstance(name, str)
            and isinstance(value, str)
            and (name + value).isascii()
            and (name + value).isprintable()
            for name, value in default_headers.items()
        ):
            raise ConfigurationError("default_headers must map strings to printable ASCII strings")
        # Without the key: it is set on each request as it is built (see _build), so no
        # dict that a frame holds while something can fail ever carries it.
        self._headers: dict[str, str] = {
            "accept": "application/json",
            "user-agent": USER_AGENT,
            **{k.lower(): v for k, v in (default_headers or {}).items()},
        }
        self._headers.pop("authorization", None)
        self._prefix = self._settings.base_url
        self._host = httpx.URL(self._prefix).netloc.decode("ascii")
        if max_allocations_per_pool is not None and (
            type(max_allocations_per_pool) is not int or max_allocations_per_pool < 1
        ):
            raise ConfigurationError(
                "max_allocations_per_pool must be a positive integer or None, "
                f"got {max_allocations_per_pool!r}"
            )
        self._max_allocations_per_pool = max_allocations_per_pool
        self._gates: dict[str | None, Any] = {}
        # Shared with every with_options() copy, like the connection pool and the breakers.
        self._orphans = OrphanLedger()

    @staticmethod
    def _check_deadline(deadline: float | None) -> float | None:
        if deadline is not None and not check_seconds(deadline, "deadline") > 0:
            raise ConfigurationError(f"deadline must be more than 0 seconds, got {deadline!r}")
        return deadline

    # Public configuration ------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The API's base URL, without a trailing slash."""
        return self._settings.base_url

    @property
    def pool_id(self) -> str | None:
        """The pool allocations go to when a call names none (``None``: the server's default)."""
        return self._settings.pool_id

    @property
    def timeout(self) -> httpx.Timeout:
        """The timeout of each attempt."""
        return self._timeout

    @property
    def deadline(self) -> float | None:
        """The most seconds one call may take over all its attempts (``None``: no limit)."""
        return self._deadline

    @property
    def retry_policy(self) -> RetryPolicy:
        """How failed attempts are retried."""
        return self._retry

    @property
    def max_retries(self) -> int:
        """How many times a failed attempt may be retried."""
        return self._retry.max_retries

    @property
    def circuit_breaker(self) -> CircuitBreaker | None:
        """The breaker guarding this client's host, or ``None`` when breakers are disabled."""
        return self._breaker()

    def __repr__(self) -> str:
        return (
            f"<{type(self).__name__} base_url={self.base_url!r} pool_id={self.pool_id!r} "
            f"max_retries={self.max_retries}>"
        )

    def __reduce__(self) -> tuple[object, ...]:
        raise TypeError(f"{type(self).__name__} cannot be pickled: it holds the API key")

    def __copy__(self) -> Self:
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone

    def with_options(
        self,
        *,
        pool_id: str | NotGiven | None = NOT_GIVEN,
        timeout: float | httpx.Timeout | NotGiven | None = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        deadline: float | NotGiven | None = NOT_GIVEN,
        retry: RetryPolicy | NotGiven = NOT_GIVEN,
    ) -> Self:
        """A copy with some settings changed that shares this client's connection pool and
        circuit breakers. Closing the copy leaves the connections open."""
        clone = self.__copy__()
        clone._owns_http = False
        if not isinstance(pool_id, NotGiven):
            if pool_id is not None:
                check_id(pool_id, "pool_id")
            clone._settings = attrs.evolve(self._settings, pool_id=pool_id)
        if not isinstance(timeout, NotGiven):
            clone._timeout = _pick_timeout(timeout)
        if not isinstance(deadline, NotGiven):
            clone._deadline = self._check_deadline(deadline)
        if not isinstance(retry, NotGiven):
            clone._retry = _resolve_retry(
                retry, retry.max_retries if isinstance(max_retries, NotGiven) else max_retries
            )
        elif not isinstance(max_retries, NotGiven):
            clone._retry = _retry_policy(clone._retry, max_retries)
        return clone

    def orphans(self) -> list[OrphanedAllocation]:
        """Allocations this client could not release (they may still be billing)."""
        return self._orphans.snapshot()

    def _for_release(self, release_timeout: float) -> Self:
        """A copy for releasing: more patient retries, bounded by the release timeout, and
        no circuit breaker (a release must be tried even when the host looks unhealthy)."""
        clone = self.with_options(retry=_RELEASE_RETRY, deadline=release_timeout)
        clone._breaker_config = None
        return clone

    def _allocation_gate(self, pool_id: str | None) -> Any:
        if self._max_allocations_per_pool is None:
            return None
        gate = self._gates.get(pool_id)
        if gate is None:
            gate = self._gates.setdefault(pool_id, self._new_gate(self._max_allocations_per_pool))
        return gate

    @staticmethod
    def _new_gate(size: int) -> Any:
        raise NotImplementedError

    # GPU leases

    def allocate(
        self,
        model: str,
        gpus: int = 1,
        gpu_type: str | None = None,
        pool_id: str | None = None,
        *,
        ttl: float | timedelta | None = DEFAULT_LEASE_TTL,
        ready_timeout: float = DEFAULT_READY_TIMEOUT,
        capacity_timeout: float = DEFAULT_CAPACITY_TIMEOUT,
        release_timeout: float = DEFAULT_RELEASE_TIMEOUT,
        renew_interval: float | None = None,
        idempotency_key: str | None = None,
    ) -> LeaseT:
        """GPUs for the length of a block: ``with client.allocate(model=...) as lease:``
        (``async with`` on the async client).

        Entering waits until the allocation is ready (waiting up to ``capacity_timeout`` for
        a full pool); the TTL is renewed in the background every ``renew_interval`` seconds
        (default: a third of the TTL); leaving the block releases it, however it is left.
        """
        return self._lease_class(
            self,
            model=model,
            gpus=gpus,
            gpu_type=gpu_type,
            pool_id=pool_id,
            ttl=ttl,
            ready_timeout=ready_timeout,
            capacity_timeout=capacity_timeout,
            release_timeout=release_timeout,
            renew_interval=renew_interval,
            idempotency_key=idempotency_key,
        )

    # Building calls ------------------------------------------------------------------------

    def _breaker(self) -> CircuitBreaker | None:
        if self._breaker_config is None:
            return None
        breaker = self._breakers.get(self._host)
        if breaker is None:
            breaker = self._breakers.setdefault(
                self._host, CircuitBreaker(self._breaker_config, name=self._host)
            )
        return breaker

    def _build(self, call: _Call[Any], timeout: httpx.Timeout) -> httpx.Request:
        headers = self._headers
        if call.headers:
            headers = {**headers, **call.headers}
        content: bytes | None = None
        if call.json is not None:
            try:
                content = json.dumps(call.json, separators=(",", ":"), allow_nan=False).encode()
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"cannot send this request body as JSON: {exc}") from None
            headers = {**headers, "content-type": "application/json"}
        return self._http.build_request(
            call.method,
            self._prefix + call.path,
            content=content,
            params=call.params,
            # The key joins the headers only inside the request (whose repr does not show
            # them); the plan blanks it there once the attempt is over.
            headers={**headers, "authorization": self._settings.api_key.bearer()},
            timeout=timeout,
        )

    def _plan(self, call: _Call[T]) -> _Plan[T]:
        """Carry one call through its attempts: the single place retries are decided."""
        breaker = self._breaker()
        policy = self._retry
        delays = policy.backoff_delays()
        deadline_at = None if self._deadline is None else time.monotonic() + self._deadline
        attempt = 0
        failed: HostedAIError | None = None  # the last attempt's error, once there is one
        while True:
            timeout = self._timeout
            if deadline_at is not None:
                remaining = deadline_at - time.monotonic()
                if remaining <= 0:
                    raise APITimeoutError(
                        f"the call's deadline of {self._deadline}s ran out after "
                        f"{attempt} attempt(s) made"
                    )
                timeout = _clip(timeout, remaining)
            request = self._build(call, timeout)
            try:
                probe = breaker.acquire() if breaker is not None else False
            except CircuitOpenError as refused:
                if failed is None:
                    raise
                # A refused retry is a retry not made: the call failed as its last attempt
                # did (which may have reached the server), not "refused before sending".
                failed.add_note(f"hostedai-harpoon: not retried: {refused}")
                raise failed from failed.__cause__
            try:
                outcome = yield _Send(request, call.stream, deadline_at)
            except GeneratorExit:
                if breaker is not None:
                    breaker.abandon(probe)
                raise
            finally:
                _redact(request)
            if isinstance(outcome, _Reply):
                response = outcome.response
                status = response.status_code
                if log.isEnabledFor(logging.DEBUG):  # spare the header lookup on the hot path
                    log.debug(
                        "%s %s -> %d (attempt %d, request_id=%s)",
                        call.method,
                        call.path,
                        status,
                        attempt + 1,
                        _request_id(response),
                    )
                if status < 300 or (call.absent_ok and status in _GONE):
                    if breaker is not None:
                        breaker.record(probe, True)
                    return self._parse(call, outcome)
                error: HostedAIError = _status_error(response, outcome.body)
                if breaker is not None:
                    # A full pool is an answer about capacity, not about the host's health.
                    breaker.record(probe, status < 500 or isinstance(error, CapacityError))
                retryable = is_retryable_status(status, idempotent=call.idempotent) and (
                    call.retry_capacity or not isinstance(error, CapacityError)
                )
                wait = error.retry_after if isinstance(error, APIStatusError) else None
            else:
                assert isinstance(outcome, httpx.TransportError)
                if breaker is not None:
                    if isinstance(outcome, httpx.PoolTimeout):
                        # No free connection in our own pool: the host never saw the request.
                        breaker.abandon(probe)
                    else:
                        breaker.record(probe, False)
                log.debug(
                    "%s %s -> %s (attempt %d)",
                    call.method,
                    call.path,
                    type(outcome).__name__,
                    attempt + 1,
                )
                if (
                    deadline_at is not None
                    and isinstance(outcome, httpx.TimeoutException)
                    and time.monotonic() >= deadline_at
                ):
                    error = APITimeoutError(
                        f"the call's deadline of {self._deadline}s ran out after "
                        f"{attempt + 1} attempt(s) made"
                    )
                else:
                    error = _transport_error(outcome)
                error.__cause__ = outcome
                retryable = is_retryable_transport_error(outcome, idempotent=call.idempotent)
                wait = None
            if not retryable or attempt >= policy.max_retries:
                raise error
            if wait is not None and wait > policy.max_retry_after:
                raise error
            if wait is None:
                wait = next(delays)
            if deadline_at is not None and time.monotonic() + wait >= deadline_at:
                raise error
            attempt += 1
            failed = error
            log.debug("retrying %s %s in %.3fs (retry %d)", call.method, call.path, wait, attempt)
            yield Sleep(wait)

    def _parse(self, call: _Call[T], reply: _Reply) -> T:
        response = reply.response
        if call.stream or call.parse is None or (call.absent_ok and response.status_code in _GONE):
            return response if call.stream else None  # type: ignore[return-value]
        data = _decode_json(reply.body, response)
        try:
            return call.parse(data, _request_id(response))
        except models.InvalidPayload as exc:
            raise models.validation_error(
                str(exc),
                status_code=response.status_code,
                request_id=_request_id(response),
                body=data,
            ) from None

    # The calls, as plans -------------------------------------------------------------------

    def _create_allocation(
        self,
        model: str,
        gpus: int,
        gpu_type: str | None,
        pool_id: str | None,
        ttl: float | timedelta | None,
        idempotency_key: str | None,
        retry_capacity: bool = True,
    ) -> _Call[Allocation]:
        body: dict[str, object] = {
            "model": check_text(model, "model"),
            "gpu_count": check_gpus(gpus),
        }
        pool = pool_id if pool_id is not None else self._settings.pool_id
        if pool is not None:
            check_id(pool, "pool_id")
            body["pool_id"] = pool
        if check_optional_text(gpu_type, "gpu_type") is not None:
            body["gpu_type"] = gpu_type
        ttl_in_seconds = ttl_seconds(ttl)
        if ttl_in_seconds is not None:
            body["ttl_seconds"] = ttl_in_seconds
        key = check_idempotency_key(idempotency_key) or new_idempotency_key()
        return _Call(
            "POST",
            "/v1/allocate",
            models.parse_allocation,
            json=body,
            headers={"idempotency-key": key},
            retry_capacity=retry_capacity,
        )

    def _get_allocation(self, allocation_id: str) -> _Call[Allocation]:
        path = f"/v1/allocate/{check_id(allocation_id, 'allocation_id')}"
        return _Call("GET", path, models.parse_allocation)

    def _list_allocations(self, pool_id: str | None) -> _Call[list[Allocation]]:
        params = None if pool_id is None else {"pool_id": check_text(pool_id, "pool_id")}
        return _Call("GET", "/v1/allocate", models.parse_allocations, params=params)

    def _renew_allocation(
        self, allocation_id: str, ttl: float | timedelta | None
    ) -> _Call[Allocation]:
        ttl_in_seconds = ttl_seconds(ttl)
        body = {} if ttl_in_seconds is None else {"ttl_seconds": ttl_in_seconds}
        path = f"/v1/allocate/{check_id(allocation_id, 'allocation_id')}/renew"
        # Renewing twice only moves the expiry to the same place: safe to repeat.
        return _Call("POST", path, models.parse_allocation, json=body)

    def _release_allocation(self, allocation_id: str) -> _Call[None]:
        path = f"/v1/allocate/{check_id(allocation_id, 'allocation_id')}"
        return _Call("DELETE", path, None, absent_ok=True)

    def _inference_body(
        self,
        allocation_id: str,
        prompt: str,
        *,
        model: str | None,
        max_tokens: int | None,
        temperature: float | None,
        stop: str | list[str] | None,
        stream: bool,
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
        if stream:
            body["stream"] = True
        return body

    def _infer(self, body: dict[str, object]) -> _Call[InferenceResult]:
        # No Idempotency-Key on the wire for inference: a retry after an ambiguous failure
        # could run (and bill) the work twice, so only clear failures are retried.
        return _Call("POST", "/v1/inference", models.parse_inference, json=body, idempotent=False)

    def _stream(self, body: dict[str, object]) -> _Call[httpx.Response]:
        return _Call(
            "POST",
            "/v1/inference",
            None,
            json=body,
            headers={"accept": "text/event-stream"},
            idempotent=False,
            stream=True,
        )

    def _list_pools(self) -> _Call[list[Pool]]:
        return _Call("GET", "/v1/pools", models.parse_pools)

    def _get_pool(self, pool_id: str) -> _Call[Pool]:
        return _Call("GET", f"/v1/pools/{check_id(pool_id, 'pool_id')}", models.parse_pool)

    def _health(self) -> _Call[Health]:
        return _Call("GET", "/v1/health", models.parse_health)


_sleep = time.sleep


async def _async_sleep(seconds: float) -> None:
    import asyncio  # here, not at the top: sync users should not pay for importing it

    await asyncio.sleep(seconds)


class _EventDecoder:
    """Turns the bytes of a ``text/event-stream`` into ``InferenceChunk``s.

    One event (its ``data:`` lines, or any single line) may be at most ``limit`` bytes;
    and, as the wait for a single read is bounded by the read timeout, the time between
    two events is bounded by it too, so comment lines sent as keepalives cannot hold a
    stream open forever.
    """

    def __init__(self, response: httpx.Response, limit: int) -> None:
        self._response = response
        self._request_id = _request_id(response)
        self._limit = limit
        self._idle: float | None = response.request.extensions.get("timeout", {}).get("read")
        self._last_event = time.monotonic()
        self._buffer = bytearray()
        self._scanned = 0  # how much of the buffer is known to hold no line end
        self._data: list[str] = []
        self._pending = 0  # bytes of the event's data lines so far
        self.done = False

    def feed(self, data: bytes) -> list[InferenceChunk]:
        """Take the next decoded bytes; return the chunks of the events they complete."""
        buffer = self._buffer
        buffer += data
        chunks: list[InferenceChunk] = []
        start = 0
        while not self.done:
            end = buffer.find(b"\n", self._scanned)
            if end < 0:
                break
            if end - start > self._limit:
                raise _too_large_error(self._response, self._limit, "an event of the stream")
            line = bytes(buffer[start:end]).decode("utf-8", "replace").removesuffix("\r")
            size = end - start
            start = self._scanned = end + 1
            chunk = self._line(line, size)
            if chunk is not None:
                chunks.append(chunk)
        del buffer[:start]
        self._scanned = len(buffer)
        if self._pending + len(buffer) > self._limit:
            raise _too_large_error(self._response, self._limit, "an event of the stream")
        if chunks or self.done:
            self._last_event = time.monotonic()
        elif self._idle is not None and time.monotonic() - self._last_event > self._idle:
            raise APITimeoutError(
                f"the stream sent no event for {self._idle:.3g}s (the read timeout)"
            )
        return chunks

    def _line(self, line: str, size: int) -> InferenceChunk | None:
        if line.startswith("data:"):
            self._pending += size
            if self._pending > self._limit:
                raise _too_large_error(self._response, self._limit, "an event of the stream")
            self._data.append(line[5:].lstrip(" ") if line[5:6] == " " else line[5:])
            return None
        if line or not self._data:
            return None  # comments, other fields, or a blank line with no event pending
        data = "\n".join(self._data)
        self._data.clear()
        self._pending = 0
        if data == "[DONE]":
            self.done = True
            return None
        payload = _decode_json(data, self._response)
        try:
            return models.parse_chunk(payload, self._request_id)
        except models.InvalidPayload as exc:
            raise models.validation_error(
                str(exc),
                status_code=self._response.status_code,
                request_id=self._request_id,
                body=payload,
            ) from None

    def finish(self) -> None:
        """Check that the stream ended properly."""
        if not self.done:
            raise models.validation_error(
                "the event stream ended before its [DONE] event",
                status_code=self._response.status_code,
                request_id=self._request_id,
                body=None,
            )


def _check_stream_type(response: httpx.Response) -> None:
    content_type = response.headers.get("content-type", "")
    if not content_type.startswith("text/event-stream"):
        raise models.validation_error(
            f"expected an event stream, got content-type {content_type!r}",
            status_code=response.status_code,
            request_id=_request_id(response),
            body=None,
        )


# The sync client ---------------------------------------------------------------------------


class InferenceStream:
    """The chunks of a streamed inference. Iterate it; close it (or use ``with``) to stop
    early. Stopping a ``for`` loop early also closes the connection.

    One event may be at most ``max_event_bytes`` long (the client's ``max_response_bytes``),
    and the wait between two events at most the read timeout (see docs/limits.md).
    """

    def __init__(
        self, response: httpx.Response, max_event_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    ) -> None:
        self.response = response
        self.request_id = _request_id(response)
        self._max_event_bytes = max_event_bytes
        self._started = False

    def _decoder(self) -> _EventDecoder:
        if self._started:
            raise HostedAIError("this stream was already read; start a new one")
        self._started = True
        return _EventDecoder(self.response, self._max_event_bytes)

    def __iter__(self) -> Iterator[InferenceChunk]:
        decoder = self._decoder()
        response = self.response
        try:
            decoding = _Decoding(response)
            for data in response.iter_raw() if decoding.raw else response.iter_bytes():
                for piece in decoding.decode(data):
                    yield from decoder.feed(piece)
                    if decoder.done:
                        return
            for piece in decoding.finish():
                yield from decoder.feed(piece)
            decoder.finish()
        except httpx.TransportError as exc:
            raise _transport_error(exc) from exc
        except httpx.DecodingError as exc:
            raise _undecodable(self.response, exc) from None
        except httpx.StreamError as exc:  # closed before it was read
            raise HostedAIError(f"the stream cannot be read: {exc}") from None
        finally:
            self.response.close()

    def close(self) -> None:
        """Stop the stream and close its connection."""
        self.response.close()

    def __aiter__(self) -> NoReturn:
        raise UsageError("this stream comes from the sync client: iterate it with `for`")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class HostedAI(BaseClient[httpx.Client, Lease]):
    """The synchronous HostedAI client.

    Arguments left out come from ``HOSTED_AI_BASE_URL``, ``HOSTED_AI_API_KEY`` and
    ``HOSTED_AI_POOL_ID``. ``timeout`` bounds each attempt; ``deadline`` (seconds) bounds a
    whole call across its retries. ``http_client`` is used as given and not closed by us.
    """

    _lease_class = Lease

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        pool_id: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        deadline: float | None = None,
        retry: RetryPolicy | None = None,
        circuit_breaker: CircuitBreakerConfig | NotGiven | None = NOT_GIVEN,
        http_client: httpx.Client | None = None,
        allow_insecure_http: bool = False,
        default_headers: Mapping[str, str] | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_allocations_per_pool: int | None = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            pool_id,
            timeout=timeout,
            max_retries=max_retries,
            deadline=deadline,
            retry=retry,
            circuit_breaker=circuit_breaker,
            allow_insecure_http=allow_insecure_http,
            default_headers=default_headers,
            max_response_bytes=max_response_bytes,
            max_allocations_per_pool=max_allocations_per_pool,
        )
        if http_client is not None and not isinstance(http_client, httpx.Client):
            raise ConfigurationError("http_client must be an httpx.Client for HostedAI")
        self._owns_http = http_client is None
        self._http = http_client or httpx.Client(timeout=self._timeout, follow_redirects=False)

    # Driving plans

    def _run(self, call: _Call[T]) -> T:
        plan = self._plan(call)
        outcome: _Outcome = None
        try:
            while True:
                action = plan.send(outcome)
                if isinstance(action, Sleep):
                    _sleep(action.seconds)
                    outcome = None
                else:
                    outcome = self._send(action)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            plan.close()

    def _send(self, action: _Send) -> _Reply | httpx.TransportError:
        if self._http.is_closed:
            raise _closed_error()
        try:
            response = self._http.send(action.request, stream=True)
        except httpx.TransportError as exc:
            return exc
        if action.stream and response.status_code < 400:
            return _Reply(response, b"")
        deadline_at = action.deadline_at
        try:
            body = _Body(response, self._max_response_bytes)
            if body.loaded is not None:
                return _Reply(response, body.loaded)
            if deadline_at is not None:
                _clip_reads(action.request, deadline_at)
            for chunk in response.iter_raw() if body.decoding.raw else response.iter_bytes():
                body.feed(chunk)
                if deadline_at is not None and time.monotonic() >= deadline_at:
                    return _deadline_passed(action.request)
            return _Reply(response, body.finish())
        except httpx.TransportError as exc:
            return exc
        except httpx.DecodingError as exc:
            raise _undecodable(response, exc) from None
        finally:
            response.close()

    def release_orphans(self) -> list[OrphanedAllocation]:
        """Try again to release every orphan; return those that are still held."""
        still: list[OrphanedAllocation] = []
        for orphan in self._orphans.snapshot():
            try:
                self._release_orphan(orphan)
            except HostedAIError:
                still.append(orphan)
            else:
                self._orphans.discard(orphan)
        return still

    def _release_orphan(self, orphan: OrphanedAllocation) -> None:
        drive(release_orphan_flow(orphan), self._for_release(DEFAULT_RELEASE_TIMEOUT))

    @staticmethod
    def _new_gate(size: int) -> threading.BoundedSemaphore:
        return threading.BoundedSemaphore(size)

    # Lifecycle

    def close(self) -> None:
        """Close the connection pool (unless it was passed in as ``http_client``)."""
        if self._owns_http:
            self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        raise UsageError(
            "HostedAI is the sync client: use `with HostedAI(...)`, "
            "or AsyncHostedAI for `async with`"
        )

    async def __aexit__(self, *_: object) -> None:
        """Never reached: entering with ``async with`` is refused."""

    # The API

    def create_allocation(
        self,
        model: str,
        gpus: int = 1,
        gpu_type: str | None = None,
        pool_id: str | None = None,
        ttl: float | timedelta | None = None,
        idempotency_key: str | None = None,
    ) -> Allocation:
        """Allocate ``gpus`` GPUs for ``model``. Safe to retry: every attempt of one call
        carries the same ``Idempotency-Key``, so it creates at most one allocation."""
        return self._run(
            self._create_allocation(model, gpus, gpu_type, pool_id, ttl, idempotency_key)
        )

    def _create_for_lease(self, **create: Any) -> Allocation:
        return self._run(self._create_allocation(**create, retry_capacity=False))

    def get_allocation(self, allocation_id: str) -> Allocation:
        """The allocation as the server sees it now."""
        return self._run(self._get_allocation(allocation_id))

    def list_allocations(self, pool_id: str | None = None) -> list[Allocation]:
        """The live allocations, optionally of one pool."""
        return self._run(self._list_allocations(pool_id))

    def renew_allocation(
        self, allocation_id: str, ttl: float | timedelta | None = None
    ) -> Allocation:
        """Push the allocation's expiry ``ttl`` seconds (default: its own TTL) from now."""
        return self._run(self._renew_allocation(allocation_id, ttl))

    def release_allocation(self, allocation_id: str) -> None:
        """Release the allocation. Idempotent: an unknown or already released one is fine."""
        self._run(self._release_allocation(allocation_id))

    def infer(
        self,
        allocation_id: str,
        prompt: str,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
    ) -> InferenceResult:
        """Run one inference on the allocation."""
        body = self._inference_body(
            allocation_id,
            prompt,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
            stream=False,
        )
        return self._run(self._infer(body))

    def stream(
        self,
        allocation_id: str,
        prompt: str,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
    ) -> InferenceStream:
        """Start a streamed inference; iterate the result for ``InferenceChunk``s."""
        body = self._inference_body(
            allocation_id,
            prompt,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
            stream=True,
        )
        response = self._run(self._stream(body))
        try:
            _check_stream_type(response)
        except BaseException:
            response.close()
            raise
        return InferenceStream(response, self._max_response_bytes)

    def list_pools(self) -> list[Pool]:
        """The pools this key can use, the default pool first."""
        return self._run(self._list_pools())

    def get_pool(self, pool_id: str) -> Pool:
        """One pool, with its free capacity now."""
        return self._run(self._get_pool(pool_id))

    def health(self) -> Health:
        """The service's health."""
        return self._run(self._health())


# The async client --------------------------------------------------------------------------


class AsyncInferenceStream:
    """The chunks of a streamed inference, for ``async for``.

    ``async with client.stream(...) as chunks:`` sends the request on entering and closes
    the connection on leaving, however the block ends; ``chunks = await client.stream(...)``
    sends it at once (then ``aclose()`` it to stop early).

    One event may be at most ``max_event_bytes`` long (the client's ``max_response_bytes``),
    and the wait between two events at most the read timeout (see docs/limits.md).
    """

    def __init__(
        self,
        start: Callable[[], Awaitable[httpx.Response]],
        max_event_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
    ) -> None:
        self._start = start
        self._max_event_bytes = max_event_bytes
        self._response: httpx.Response | None = None
        self._map_error: Callable[[HostedAIError], BaseException] | None = None
        self._started = False
        self.request_id: str | None = None

    def __repr__(self) -> str:
        return f"<AsyncInferenceStream request_id={self.request_id!r}>"

    @property
    def response(self) -> httpx.Response:
        """The HTTP response carrying the stream (once the request was sent)."""
        if self._response is None:
            raise HostedAIError("the stream was not started: await it or use `async with`")
        return self._response

    async def _open(self) -> httpx.Response:
        if self._response is None:
            try:
                self._response = await self._start()
            except HostedAIError as exc:
                if self._map_error is None:
                    raise
                raise self._map_error(exc) from exc
            self.request_id = _request_id(self._response)
        return self._response

    async def _opened(self) -> Self:
        await self._open()
        return self

    def __await__(self) -> Generator[Any, None, Self]:
        return self._opened().__await__()

    async def __aiter__(self) -> AsyncIterator[InferenceChunk]:
        if self._started:
            raise HostedAIError("this stream was already read; start a new one")
        self._started = True
        response = await self._open()
        decoder = _EventDecoder(response, self._max_event_bytes)
        try:
            decoding = _Decoding(response)
            async for data in response.aiter_raw() if decoding.raw else response.aiter_bytes():
                for piece in decoding.decode(data):
                    for chunk in decoder.feed(piece):
                        yield chunk
                    if decoder.done:
                        return
            for piece in decoding.finish():
                for chunk in decoder.feed(piece):
                    yield chunk
            decoder.finish()
        except httpx.TransportError as exc:
            raise _transport_error(exc) from exc
        except httpx.DecodingError as exc:
            raise _undecodable(response, exc) from None
        except httpx.StreamError as exc:  # closed before it was read
            raise HostedAIError(f"the stream cannot be read: {exc}") from None
        finally:
            await response.aclose()

    def __iter__(self) -> NoReturn:
        raise UsageError(
            "this stream is async: `async with client.stream(...) as chunks: "
            "async for chunk in chunks: ...`"
        )

    async def aclose(self) -> None:
        """Stop the stream and close its connection."""
        if self._response is not None:
            await self._response.aclose()

    async def __aenter__(self) -> Self:
        return await self._opened()

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


class AsyncHostedAI(BaseClient[httpx.AsyncClient, AsyncLease]):
    """The asyncio HostedAI client: the same calls as ``HostedAI``, awaited."""

    _lease_class = AsyncLease

    def __init__(
        self,
        base_url: str | None = None,
        api_key: str | None = None,
        pool_id: str | None = None,
        *,
        timeout: float | httpx.Timeout | None = DEFAULT_TIMEOUT,
        max_retries: int = DEFAULT_MAX_RETRIES,
        deadline: float | None = None,
        retry: RetryPolicy | None = None,
        circuit_breaker: CircuitBreakerConfig | NotGiven | None = NOT_GIVEN,
        http_client: httpx.AsyncClient | None = None,
        allow_insecure_http: bool = False,
        default_headers: Mapping[str, str] | None = None,
        max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES,
        max_allocations_per_pool: int | None = None,
    ) -> None:
        super().__init__(
            base_url,
            api_key,
            pool_id,
            timeout=timeout,
            max_retries=max_retries,
            deadline=deadline,
            retry=retry,
            circuit_breaker=circuit_breaker,
            allow_insecure_http=allow_insecure_http,
            default_headers=default_headers,
            max_response_bytes=max_response_bytes,
            max_allocations_per_pool=max_allocations_per_pool,
        )
        if http_client is not None and not isinstance(http_client, httpx.AsyncClient):
            raise ConfigurationError("http_client must be an httpx.AsyncClient for AsyncHostedAI")
        self._owns_http = http_client is None
        self._http = http_client or httpx.AsyncClient(timeout=self._timeout, follow_redirects=False)

    # Driving plans

    async def _run(self, call: _Call[T]) -> T:
        plan = self._plan(call)
        outcome: _Outcome = None
        try:
            while True:
                action = plan.send(outcome)
                if isinstance(action, Sleep):
                    await _async_sleep(action.seconds)
                    outcome = None
                else:
                    outcome = await self._send(action)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        finally:
            plan.close()

    async def _send(self, action: _Send) -> _Reply | httpx.TransportError:
        if self._http.is_closed:
            raise _closed_error()
        if action.deadline_at is None:
            return await self._exchange(action)
        import asyncio

        try:
            async with asyncio.timeout(max(action.deadline_at - time.monotonic(), 0.0)):
                return await self._exchange(action)
        except TimeoutError:
            return _deadline_passed(action.request)

    async def _exchange(self, action: _Send) -> _Reply | httpx.TransportError:
        try:
            response = await self._http.send(action.request, stream=True)
        except httpx.TransportError as exc:
            return exc
        if action.stream and response.status_code < 400:
            return _Reply(response, b"")
        try:
            body = _Body(response, self._max_response_bytes)
            if body.loaded is not None:
                return _Reply(response, body.loaded)
            async for chunk in (
                response.aiter_raw() if body.decoding.raw else response.aiter_bytes()
            ):
                body.feed(chunk)
            return _Reply(response, body.finish())
        except httpx.TransportError as exc:
            return exc
        except httpx.DecodingError as exc:
            raise _undecodable(response, exc) from None
        finally:
            await response.aclose()

    async def release_orphans(self) -> list[OrphanedAllocation]:
        """Try again to release every orphan; return those that are still held."""
        still: list[OrphanedAllocation] = []
        for orphan in self._orphans.snapshot():
            try:
                await self._release_orphan(orphan)
            except HostedAIError:
                still.append(orphan)
            else:
                self._orphans.discard(orphan)
        return still

    async def _release_orphan(self, orphan: OrphanedAllocation) -> None:
        await adrive(release_orphan_flow(orphan), self._for_release(DEFAULT_RELEASE_TIMEOUT))

    @staticmethod
    def _new_gate(size: int) -> asyncio.BoundedSemaphore:
        import asyncio

        return asyncio.BoundedSemaphore(size)

    # Lifecycle

    async def close(self) -> None:
        """Close the connection pool (unless it was passed in as ``http_client``)."""
        if self._owns_http:
            await self._http.aclose()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __enter__(self) -> Self:
        raise UsageError(
            "AsyncHostedAI is the async client: use `async with AsyncHostedAI(...)`, "
            "or HostedAI for `with`"
        )

    def __exit__(self, *_: object) -> None:
        """Never reached: entering with ``with`` is refused."""

    # The API

    async def create_allocation(
        self,
        model: str,
        gpus: int = 1,
        gpu_type: str | None = None,
        pool_id: str | None = None,
        ttl: float | timedelta | None = None,
        idempotency_key: str | None = None,
    ) -> Allocation:
        """Allocate ``gpus`` GPUs for ``model``. Safe to retry: every attempt of one call
        carries the same ``Idempotency-Key``, so it creates at most one allocation."""
        return await self._run(
            self._create_allocation(model, gpus, gpu_type, pool_id, ttl, idempotency_key)
        )

    async def _create_for_lease(self, **create: Any) -> Allocation:
        return await self._run(self._create_allocation(**create, retry_capacity=False))

    async def get_allocation(self, allocation_id: str) -> Allocation:
        """The allocation as the server sees it now."""
        return await self._run(self._get_allocation(allocation_id))

    async def list_allocations(self, pool_id: str | None = None) -> list[Allocation]:
        """The live allocations, optionally of one pool."""
        return await self._run(self._list_allocations(pool_id))

    async def renew_allocation(
        self, allocation_id: str, ttl: float | timedelta | None = None
    ) -> Allocation:
        """Push the allocation's expiry ``ttl`` seconds (default: its own TTL) from now."""
        return await self._run(self._renew_allocation(allocation_id, ttl))

    async def release_allocation(self, allocation_id: str) -> None:
        """Release the allocation. Idempotent: an unknown or already released one is fine."""
        await self._run(self._release_allocation(allocation_id))

    async def infer(
        self,
        allocation_id: str,
        prompt: str,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
    ) -> InferenceResult:
        """Run one inference on the allocation."""
        body = self._inference_body(
            allocation_id,
            prompt,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
            stream=False,
        )
        return await self._run(self._infer(body))

    def stream(
        self,
        allocation_id: str,
        prompt: str,
        *,
        model: str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
    ) -> AsyncInferenceStream:
        """A streamed inference: ``async with client.stream(...) as chunks: async for ...``
        (or ``await`` it to send the request at once)."""
        body = self._inference_body(
            allocation_id,
            prompt,
            model=model,
            max_tokens=max_tokens,
            temperature=temperature,
            stop=stop,
            stream=True,
        )
        return AsyncInferenceStream(
            functools.partial(self._start_stream, body), self._max_response_bytes
        )

    async def _start_stream(self, body: dict[str, object]) -> httpx.Response:
        response = await self._run(self._stream(body))
        try:
            _check_stream_type(response)
        except BaseException:
            await response.aclose()
            raise
        return response

    async def list_pools(self) -> list[Pool]:
        """The pools this key can use, the default pool first."""
        return await self._run(self._list_pools())

    async def get_pool(self, pool_id: str) -> Pool:
        """One pool, with its free capacity now."""
        return await self._run(self._get_pool(pool_id))

    async def health(self) -> Health:
        """The service's health."""
        return await self._run(self._health())
