"""The plan of a call: THE place where an attempt is built, the breaker asked, the outcome
read, a retry decided and timed, the deadline kept, and the answer parsed.

A ``Planner`` holds what a client's settings make of each call (its requests' prefix and
headers, the per-attempt timeout, the deadline, the retry policy, the host's breaker);
``Planner.plan(call)`` is a generator of steps (``_steps.py``) that a driver carries out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

import attrs
import httpx

from .. import _telemetry as telemetry
from .._config import Secret
from .._exceptions import (
    APIStatusError,
    APITimeoutError,
    CapacityError,
    CircuitOpenError,
    ConfigurationError,
    HostedAIError,
)
from .._resilience import (
    CircuitBreaker,
    RetryPolicy,
    is_retryable_status,
    is_retryable_transport_error,
    never_sent,
)
from . import _clock
from ._errors import parse_reply, request_id, stand_in, status_error, transport_error
from ._steps import Call, Flow, Reply, Send, Sleep

__all__ = ["Planner"]

log = logging.getLogger("hostedai_harpoon")

T = TypeVar("T")

_URLS_KEPT = 64
# One encoder for every body: ``json.dumps`` with options makes a new one on each call.
_to_json = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode


def _clip(timeout: httpx.Timeout, remaining: float) -> httpx.Timeout:
    def clip(value: float | None) -> float:
        return remaining if value is None else min(value, remaining)

    return httpx.Timeout(
        connect=clip(timeout.connect),
        read=clip(timeout.read),
        write=clip(timeout.write),
        pool=clip(timeout.pool),
    )


_BUILD_REQUEST = (httpx.Client.build_request, httpx.AsyncClient.build_request)


def _plain_client(build_request: object) -> httpx.Client | httpx.AsyncClient | None:
    """The http client ``build_request`` belongs to, when it is httpx's own method."""
    client = getattr(build_request, "__self__", None)
    if isinstance(client, httpx.Client | httpx.AsyncClient) and (
        getattr(build_request, "__func__", None) in _BUILD_REQUEST
    ):
        return client
    return None


@attrs.frozen
class Planner:
    """How a client carries out each call; ``attrs.evolve`` makes a variant (the patient,
    breaker-free one releases use, a copy ``with_options`` makes)."""

    build_request: Any  # the http client's build_request: httpx.Client's or AsyncClient's
    prefix: str
    headers: Mapping[str, str]
    secret: Secret | None  # None: no ``Authorization`` header (a server without keys)
    timeout: httpx.Timeout
    deadline: float | None
    retry: RetryPolicy
    breaker: CircuitBreaker | None
    # default_headers that carry a credential: sent, never shown.
    secret_headers: Mapping[str, Secret] = attrs.field(factory=dict)
    # The header the key goes in: ``authorization`` (as ``Bearer <key>``) or a bare-key one.
    auth_header: str = "authorization"
    # The headers of a call with a JSON body, merged once rather than on every call.
    _json_headers: Mapping[str, str] = attrs.field(
        init=False,
        default=attrs.Factory(
            lambda self: {**self.headers, "content-type": "application/json"}, takes_self=True
        ),
        repr=False,
        eq=False,
    )
    # Each path's URL, parsed once: parsing a URL is a good part of building a request.
    _urls: dict[str, httpx.URL] = attrs.field(init=False, factory=dict, repr=False, eq=False)
    # The http client whose build_request is httpx's own (not a subclass's override): its
    # requests are built here, merging its headers with ours once, not on every request.
    _http: httpx.Client | httpx.AsyncClient | None = attrs.field(
        init=False,
        default=attrs.Factory(lambda self: _plain_client(self.build_request), takes_self=True),
        repr=False,
        eq=False,
    )
    # Our headers (the plain or the JSON set) under the http client's: by lowercase name.
    _merges: dict[int, tuple[Mapping[str, str], list[Any], dict[str, str]]] = attrs.field(
        init=False, factory=dict, repr=False, eq=False
    )

    def build(self, call: Call[Any], timeout: httpx.Timeout) -> httpx.Request:
        """The request of one attempt. The key joins its headers only inside the request,
        whose repr does not show them. The request is not changed afterwards (the caller's
        transport may keep it): errors keep a stand-in of it instead (``_errors.stand_in``)."""
        content: bytes | None = None
        if call.json is not None:
            try:
                content = _to_json(call.json).encode()
            except (TypeError, ValueError) as exc:
                raise ConfigurationError(f"cannot send this request body as JSON: {exc}") from None
        headers: Mapping[str, str]
        if call.headers:
            headers = {**self.headers, **call.headers}
            if content is not None:
                headers["content-type"] = "application/json"
        else:  # the client's headers, with the JSON type for a body: merged once, not here
            headers = self.headers if content is None else self._json_headers
        url = self._urls.get(call.path)
        if url is None:
            if len(self._urls) >= _URLS_KEPT:  # allocation ids make paths without end
                self._urls.clear()
            url = self._urls[call.path] = httpx.URL(self.prefix + call.path)
        http = self._http
        if http is not None and not http.params and not http.cookies:
            # What httpx's build_request makes, with the client's headers merged once.
            return httpx.Request(
                call.method,
                url,
                content=content,
                params=call.params,
                # Built in the call: no local of this frame ever holds the key.
                headers=self._with_secrets(self._merged(http, headers)),
                extensions={"timeout": timeout.as_dict()},
            )
        request: httpx.Request = self.build_request(
            call.method,
            url,
            content=content,
            params=call.params,
            headers=self._with_secrets(headers),
            timeout=timeout,
        )
        return request

    def _merged(
        self, http: httpx.Client | httpx.AsyncClient, headers: Mapping[str, str]
    ) -> Mapping[str, str]:
        """The http client's own headers with ``headers`` over them, by lowercase name, as
        httpx merges them; kept while neither changes (a call's own headers are not kept)."""
        raw = http.headers.raw
        kept = self._merges.get(id(headers))
        if kept is not None and kept[0] is headers and kept[1] == raw:
            return kept[2]
        merged = dict(http.headers.items())
        merged.update({name.lower(): value for name, value in headers.items()})
        if headers is self.headers or headers is self._json_headers:
            self._merges[id(headers)] = (headers, raw, merged)
        return merged

    def _with_secrets(self, headers: Mapping[str, str]) -> dict[str, str]:
        merged = {**headers}
        if self.secret_headers:
            merged.update(
                {name.lower(): value.reveal() for name, value in self.secret_headers.items()}
            )
        if self.secret is not None:
            if self.auth_header == "authorization":
                merged["authorization"] = self.secret.bearer()
            else:
                merged[self.auth_header] = self.secret.reveal()
        return merged

    def plan(self, call: Call[T]) -> Flow[T]:
        """Carry one call through its attempts: the single place retries are decided.
        (The attempts are this generator's own loop: no nested generator on every call.)"""
        trace = telemetry.start_call(
            call.operation, call.json, model=call.model, parent=call.parent
        )
        try:
            breaker = self.breaker
            policy = self.retry
            delays: Iterator[float] | None = None  # made at the first retry that needs it
            deadline_at = None if self.deadline is None else _clock.monotonic() + self.deadline
            attempt = 0
            failed: HostedAIError | None = None  # the last attempt's error, once there is one
            sent = False  # whether an attempt may have reached the server
            while True:
                timeout = self.timeout if call.timeout is None else call.timeout
                if deadline_at is not None:
                    remaining = deadline_at - _clock.monotonic()
                    if remaining <= 0:
                        late = APITimeoutError(
                            f"the call's deadline of {self.deadline}s ran out after "
                            f"{attempt} attempt(s) made"
                        )
                        late._unsent = not sent
                        raise late
                    timeout = _clip(timeout, remaining)
                request = self.build(call, timeout)
                try:
                    probe = breaker.acquire() if breaker is not None else False
                except CircuitOpenError as refused:
                    if failed is None:
                        raise
                    # A refused retry is a retry not made: the call failed as its last attempt
                    # did (which may have reached the server), not "refused before sending".
                    failed.add_note(f"hostedai-harpoon: not retried: {refused}")
                    raise failed from failed.__cause__
                trace.attempt_started(attempt, request)
                try:
                    outcome = yield Send(request, call.stream, deadline_at)
                except BaseException:  # closed, cancelled, or the driver failed reading
                    if breaker is not None:
                        breaker.abandon(probe)
                    raise
                if isinstance(outcome, Reply):
                    sent = True
                    response = outcome.response
                    status = response.status_code
                    trace.attempt_ended(status)
                    if log.isEnabledFor(logging.DEBUG):  # spare the header lookup on the hot path
                        log.debug(
                            "%s %s -> %d (attempt %d, request_id=%s)",
                            call.method,
                            call.path,
                            status,
                            attempt + 1,
                            request_id(response),
                        )
                    if call.check is None:  # v1: the status says it
                        answered = (
                            None
                            if status < 300 or status in call.absent_ok
                            else status_error(response, outcome.body)
                        )
                    else:  # another dialect reads its own envelopes (errors as 200 too)
                        answered = call.check(response, outcome.body)
                    if answered is None:
                        if breaker is not None:
                            breaker.record(probe, True)
                        result = parse_reply(call, outcome)
                        break
                    error: HostedAIError = answered
                    status = answered.status_code
                    if breaker is not None:
                        # A full pool is an answer about capacity, not about the host's health.
                        breaker.record(probe, status < 500 or isinstance(error, CapacityError))
                    retryable = is_retryable_status(status, idempotent=call.idempotent) and (
                        call.retry_capacity or not isinstance(error, CapacityError)
                    )
                    wait = error.retry_after if isinstance(error, APIStatusError) else None
                else:
                    assert isinstance(outcome, httpx.TransportError)
                    trace.attempt_ended(outcome)
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
                        and _clock.monotonic() >= deadline_at
                    ):
                        error = APITimeoutError(
                            f"the call's deadline of {self.deadline}s ran out after "
                            f"{attempt + 1} attempt(s) made"
                        )
                        error.__cause__ = stand_in(outcome)
                    else:
                        error = transport_error(outcome)
                    sent = sent or not never_sent(outcome)
                    error._unsent = not sent
                    retryable = is_retryable_transport_error(outcome, idempotent=call.idempotent)
                    wait = None
                if not retryable or attempt >= policy.max_retries:
                    raise error
                if wait is not None and wait > policy.max_retry_after:
                    raise error
                if wait is None:
                    if delays is None:
                        delays = policy.backoff_delays()
                    wait = next(delays)
                if deadline_at is not None and _clock.monotonic() + wait >= deadline_at:
                    raise error
                attempt += 1
                failed = error
                log.debug(
                    "retrying %s %s in %.3fs (retry %d)", call.method, call.path, wait, attempt
                )
                trace.retrying(wait, error)
                yield Sleep(wait)
        except BaseException as exc:  # failed, cancelled or closed: the span says which
            trace.failed(exc)
            raise
        trace.succeeded(result)
        return result
