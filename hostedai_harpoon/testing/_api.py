"""The HTTP API of docs/wire.md over :class:`State`: routing, auth, body validation, shapes."""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import parse_qs

from ._inference import complete
from ._openai import ALLOCATION_ROUTES, STANDALONE_ROUTES, OpenAIApi
from ._state import AllocationRequest, State
from ._wire import Answer, Request, WireError, error_answer, is_int, is_number, parse_json_object

__all__ = ["IN_PROCESS_ENDPOINTS", "ROUTES", "Api"]

IN_PROCESS_ENDPOINTS = "https://emulator.invalid"
"""Where allocations' endpoints are when the emulator is not served over TCP (an in-process
transport ignores the host): ``https://emulator.invalid/endpoints/<allocation id>``."""

_CONTROL_ROUTES = (
    "/v1/allocate",
    "/v1/allocate/*",
    "/v1/allocate/*/renew",
    "/v1/inference",
    "/v1/pools",
    "/v1/pools/*",
    "/v1/health",
)
ROUTES = _CONTROL_ROUTES + ALLOCATION_ROUTES + STANDALONE_ROUTES
"""Every path the emulator answers; ``*`` stands for one non-empty path segment (an id).
The OpenAI-compatible paths come twice: under an allocation's endpoint
(``/endpoints/*/v1/...``) and at a standalone server's root (``Emulator.serve_openai``)."""

Handler = Callable[[Request, list[str], float], Answer]

_MISSING: Any = object()


def _field(
    body: dict[str, Any],
    name: str,
    valid: Callable[[Any], bool],
    expected: str,
    default: Any = _MISSING,
) -> Any:
    value = body.get(name, _MISSING)
    if value is _MISSING:
        if default is _MISSING:
            raise WireError("validation_error", f"'{name}' is required.")
        return default
    if not valid(value):
        raise WireError("validation_error", f"'{name}' must be {expected}.")
    return value


def _int_between(low: int, high: int) -> Callable[[Any], bool]:
    return lambda value: is_int(value) and low <= value <= high


def _is_str(value: Any) -> bool:
    return isinstance(value, str)


def _is_stop(value: Any) -> bool:
    if isinstance(value, str):
        return True
    return isinstance(value, list) and len(value) <= 4 and all(isinstance(s, str) for s in value)


def _match(pattern: tuple[str, ...], segments: list[str]) -> list[str] | None:
    """The path parameters if ``segments`` fit ``pattern`` (``*``: one non-empty segment)."""
    if len(pattern) != len(segments):
        return None
    params = []
    for part, segment in zip(pattern, segments, strict=True):
        if part == "*" and segment:
            params.append(segment)
        elif part != segment:
            return None
    return params


def _is_idempotency_key(key: str) -> bool:
    return 1 <= len(key) <= 255 and all(" " <= char <= "~" for char in key)


class Api:
    """Answers one request against the state; every failure is an error envelope."""

    def __init__(
        self,
        state: State,
        *,
        api_keys: Collection[str] | None,
        default_ttl: int | None,
        version: str,
        latency_scale: float,
    ) -> None:
        self._state = state
        self._api_keys = None if api_keys is None else frozenset(api_keys)
        self._default_ttl = default_ttl
        self._latency_scale = latency_scale
        self.version = version
        self.health_status = "ok"
        handlers: dict[str, dict[str, Handler]] = {
            "/v1/health": {"GET": self._health},
            "/v1/pools": {"GET": self._list_pools},
            "/v1/pools/*": {"GET": self._get_pool},
            "/v1/allocate": {"POST": self._allocate, "GET": self._list_allocations},
            "/v1/allocate/*": {"GET": self._get_allocation, "DELETE": self._release},
            "/v1/allocate/*/renew": {"POST": self._renew},
            "/v1/inference": {"POST": self._infer},
            **{path: {"POST": self._on_endpoint} for path in ALLOCATION_ROUTES[:2]},
            ALLOCATION_ROUTES[2]: {"GET": self._on_endpoint},
        }
        self._routes: tuple[tuple[tuple[str, ...], dict[str, Handler]], ...] = tuple(
            (tuple(path.split("/")[1:]), handlers[path])
            for path in _CONTROL_ROUTES + ALLOCATION_ROUTES
        )
        self.openai = OpenAIApi(state, latency_scale)
        self.endpoint_base = IN_PROCESS_ENDPOINTS
        """Where allocations' endpoints are: the URL the emulator is served at, if it is."""

    def dispatch(
        self,
        request: Request,
        request_id: str,
        now: float,
        openai_models: tuple[str, ...] | None = None,
    ) -> Answer:
        """The outcome of ``request`` at time ``now`` (as a standalone OpenAI-compatible
        server serving ``openai_models``, when given)."""
        try:
            if openai_models is not None:
                if request.path not in STANDALONE_ROUTES:
                    raise WireError("route_not_found", f"There is no route {request.path!r}.")
                if self._api_keys is not None:
                    self._authenticate(request)
                return self.openai.handle(request, now, openai_models)
            handler, params = self._resolve(request)
            if handler != self._health:
                self._authenticate(request)
            return handler(request, params, now)
        except WireError as error:
            return error_answer(
                error.code, error.message, request_id, status=error.status, headers=error.headers
            )

    def _resolve(self, request: Request) -> tuple[Handler, list[str]]:
        segments = request.path.split("/")[1:] if request.path.startswith("/") else []
        for pattern, methods in self._routes:
            params = _match(pattern, segments)
            if params is None:
                continue
            handler = methods.get(request.method)
            if handler is None:
                raise WireError(
                    "method_not_allowed",
                    f"{request.method} is not allowed on {request.path!r}.",
                    headers={"allow": ", ".join(methods)},
                )
            return handler, params
        raise WireError("route_not_found", f"There is no route {request.path!r}.")

    def _authenticate(self, request: Request) -> None:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise WireError("missing_api_key", "Send an API key as 'Authorization: Bearer <key>'.")
        if self._api_keys is not None and token not in self._api_keys:
            raise WireError("invalid_api_key", "The API key is not valid.")

    # Handlers

    def _health(self, request: Request, params: list[str], now: float) -> Answer:
        return Answer(200, {"status": self.health_status, "version": self.version})

    def _list_pools(self, request: Request, params: list[str], now: float) -> Answer:
        return Answer(200, {"data": [pool.to_wire() for pool in self._state.pools()]})

    def _get_pool(self, request: Request, params: list[str], now: float) -> Answer:
        pool = self._state.pool(params[0])
        if pool is None:
            raise WireError("pool_not_found", f"There is no pool {params[0]!r}.")
        return Answer(200, pool.to_wire())

    def _allocate(self, request: Request, params: list[str], now: float) -> Answer:
        key = request.headers.get("idempotency-key")
        if key is not None and not _is_idempotency_key(key):
            raise WireError(
                "invalid_idempotency_key",
                "An Idempotency-Key is 1 to 255 printable ASCII characters.",
            )
        body = parse_json_object(request.body)
        allocation_request = AllocationRequest(
            pool_id=_field(body, "pool_id", _is_str, "a string", self._state.default_pool_id),
            model=_field(body, "model", _is_str, "a string"),
            gpu_count=_field(body, "gpu_count", _int_between(1, 64), "an integer from 1 to 64", 1),
            gpu_type=_field(
                body, "gpu_type", lambda v: v is None or _is_str(v), "a string or null", None
            ),
            ttl_seconds=_field(
                body,
                "ttl_seconds",
                lambda v: v is None or _int_between(1, 86400)(v),
                "an integer from 1 to 86400 or null",
                self._default_ttl,
            ),
        )
        allocation, replayed = self._state.allocate(allocation_request, key, now)
        headers = {"idempotent-replayed": "true"} if replayed else {}
        return Answer(
            201,
            allocation.to_wire(self.endpoint_base),
            headers,
            allocation_id=None if replayed else allocation.id,
        )

    def _list_allocations(self, request: Request, params: list[str], now: float) -> Answer:
        pool_id = parse_qs(request.query).get("pool_id", [None])[0]
        return Answer(
            200, {"data": [a.to_wire(self.endpoint_base) for a in self._state.live(pool_id)]}
        )

    def _get_allocation(self, request: Request, params: list[str], now: float) -> Answer:
        allocation = self._state.get(params[0])
        if allocation is None:
            raise WireError("allocation_not_found", f"There is no allocation {params[0]!r}.")
        return Answer(200, allocation.to_wire(self.endpoint_base))

    def _release(self, request: Request, params: list[str], now: float) -> Answer:
        self._state.release(params[0])
        return Answer(204)

    def _renew(self, request: Request, params: list[str], now: float) -> Answer:
        body = parse_json_object(request.body, empty_ok=True)
        ttl = _field(
            body, "ttl_seconds", _int_between(1, 86400), "an integer from 1 to 86400", None
        )
        return Answer(200, self._state.renew(params[0], ttl, now).to_wire(self.endpoint_base))

    def _on_endpoint(self, request: Request, params: list[str], now: float) -> Answer:
        allocation = self._state.usable(params[0], None)
        return self.openai.handle(request, now, (allocation.model,))

    def _infer(self, request: Request, params: list[str], now: float) -> Answer:
        body = parse_json_object(request.body)
        allocation_id = _field(body, "allocation_id", _is_str, "a string")
        prompt = _field(body, "prompt", _is_str, "a string")
        model = _field(body, "model", _is_str, "a string", None)
        max_tokens = _field(
            body, "max_tokens", _int_between(1, 32768), "an integer from 1 to 32768", 256
        )
        _field(
            body,
            "temperature",
            lambda v: is_number(v) and 0 <= v <= 2,
            "a number from 0 to 2",
            None,
        )
        stop = _field(body, "stop", _is_stop, "a string or a list of at most 4 strings", ())
        stream = _field(body, "stream", lambda v: isinstance(v, bool), "a boolean", False)
        allocation = self._state.usable(allocation_id, model)
        completion = complete(
            allocation.model, prompt, max_tokens, (stop,) if isinstance(stop, str) else tuple(stop)
        )
        inference_id = self._state.new_id("inf_")
        summary = {
            "finish_reason": completion.finish_reason,
            "usage": {
                "input_tokens": completion.input_tokens,
                "output_tokens": completion.output_tokens,
            },
            "latency_ms": completion.latency_ms,
        }
        delay = self._latency_scale * completion.latency_ms / 1000
        if not stream:
            payload = {
                "id": inference_id,
                "allocation_id": allocation.id,
                "model": allocation.model,
                "text": completion.text,
                **summary,
            }
            return Answer(200, payload, delay=delay)
        events: list[Any] = [{"id": inference_id, "delta": delta} for delta in completion.deltas]
        events += [{"id": inference_id, "delta": "", **summary}, "[DONE]"]
        return Answer(200, events=events, delay=delay)
