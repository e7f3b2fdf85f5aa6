"""The :class:`Emulator`: state, faults and the request log behind one lock, plus test hooks."""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import attrs

from .._version import __version__
from ._api import Api
from ._clock import Clock, SystemClock
from ._encode import apply_fault, encode_body, encode_events
from ._faults import FaultInjector, FaultKind, FaultPlan
from ._gpuaas import GpuaasApi, GpuaasQuirks
from ._hooks import Hooks
from ._openai import OpenAIServer, is_openai_path, openai_error
from ._state import PoolSpec, State, pools_from
from ._wire import (
    Answer,
    EventStream,
    Reply,
    Request,
    check_delay,
    error_answer,
    is_int,
)

if TYPE_CHECKING:
    import httpx

    from ._asgi import EmulatorApp

__all__ = ["Emulator", "Exchange"]

_ANSWER_FAULTS = frozenset({FaultKind.ERROR, FaultKind.RATE_LIMIT, FaultKind.DROP})
_BUG = "emulator_bug"
# The gpuaas dialect's default pools: numeric ids, as the platform's, serving both models.
_GPUAAS_POOLS = {"101": 8, "102": 8, "103": 8, "104": 8}
_POD_PORTS = 32  # served over TCP, pods take these ports in turn (one no live pod holds)
_LOG = logging.getLogger("hostedai_harpoon.testing")


@attrs.frozen
class Exchange:
    """One request the emulator received and what it answered.

    ``status`` is ``None`` when the connection was dropped (or the server shut down before
    it could answer); ``fault`` names the injected fault, if any, or is ``"emulator_bug"``
    when the emulator crashed and answered a 500 ``internal_error`` instead. The
    ``Authorization`` value is masked. A streamed body is filled in as
    it is sent; ``aborted`` says the client closed the stream before its end.
    ``allocation_id`` is the allocation this request created.
    """

    method: str
    path: str
    query: str
    request_headers: Mapping[str, str]
    request_body: bytes
    status: int | None
    response_headers: Mapping[str, str]
    response_body: bytes
    request_id: str
    fault: str | None = None
    idempotency_key: str | None = None
    allocation_id: str | None = None
    aborted: bool = False


class Emulator(Hooks):
    """A faithful, deterministic, in-memory HostedAI API (docs/wire.md), for tests.

    Reach it in-process (:meth:`http_client`, :meth:`async_http_client`, :meth:`transport`),
    over TCP (:meth:`serve`) or as an ASGI app (:attr:`asgi_app`); inspect it with
    :meth:`live_allocations` (the leak detector) and :attr:`exchanges` (the request log).

    - ``pools``: pool id -> GPU count, or :class:`PoolSpec` items; the first is the default
      (``None``: one pool ``gpu-pool-1`` of 8 GPUs serving both default models).
    - ``faults``: a seeded :class:`FaultPlan` of injected failures.
    - ``clock``: what readiness and expiry follow (a :class:`ManualClock` makes them exact).
    - ``ready_delay``: seconds an allocation stays ``pending`` (0: created ``ready``); on
      ``gpuaas``, seconds a pod takes to run unless ``gpuaas`` says otherwise.
    - ``default_ttl``: the TTL when a request gives none, 1 to 86400 (``None``: no expiry).
    - ``api_keys``: the accepted keys (``None``: any Bearer token).
    - ``seed``: makes ids and drawn allocation failures reproducible.
    - ``capacity_retry_after``: the ``Retry-After`` of ``capacity_exhausted``.
    - ``failure_rate``: the share of new allocations that end ``failed``.
    - ``latency_scale``: how much of an inference's reported latency is really waited.
    - ``stream_chunk_delay``: seconds between two streamed events.
    - ``version``: what ``GET /v1/health`` reports.

    Delays are finite seconds >= 0; a bad delay or TTL raises ``ValueError``. A request the
    emulator crashes on is answered 500 ``internal_error`` (logged, traceback included, on
    the ``hostedai_harpoon.testing`` logger), never an exception.
    """

    def __init__(
        self,
        pools: Mapping[str, int] | Sequence[PoolSpec] | None = None,
        *,
        faults: FaultPlan | None = None,
        clock: Clock | None = None,
        ready_delay: float = 0.0,
        default_ttl: int | None = 600,
        api_keys: Collection[str] | None = None,
        seed: int = 0,
        capacity_retry_after: int = 1,
        failure_rate: float = 0.0,
        latency_scale: float = 0.0,
        stream_chunk_delay: float = 0.0,
        version: str = f"{__version__}+emulator",
        dialect: str = "v1",
        gpuaas: GpuaasQuirks | None = None,
    ) -> None:
        if default_ttl is not None and not (is_int(default_ttl) and 1 <= default_ttl <= 86400):
            raise ValueError(
                f"default_ttl must be an integer from 1 to 86400 or None, got {default_ttl!r}"
            )
        check_delay("ready_delay", ready_delay)
        check_delay("latency_scale", latency_scale)
        self._lock = threading.Lock()
        self.clock: Clock = SystemClock() if clock is None else clock
        self.stream_chunk_delay = stream_chunk_delay
        self._state = State(
            pools_from(pools),
            ready_delay=ready_delay,
            capacity_retry_after=capacity_retry_after,
            failure_rate=failure_rate,
            seed=seed,
        )
        self._api = Api(
            self._state,
            api_keys=api_keys,
            default_ttl=default_ttl,
            version=version,
            latency_scale=latency_scale,
        )
        if dialect not in ("v1", "gpuaas"):
            raise ValueError(f"dialect must be 'v1' or 'gpuaas', got {dialect!r}")
        self.dialect = dialect
        quirks = gpuaas or GpuaasQuirks(ready_delay=ready_delay)  # pods wait as allocations do
        self._gpuaas = None if dialect == "v1" else GpuaasApi(
            pools_from(pools or _GPUAAS_POOLS), self._state, quirks,
            api_keys=api_keys, latency_scale=latency_scale,
        )  # fmt: skip
        self._plan = faults
        self._app: EmulatorApp | None = None
        self._clear()

    # The sans-I/O core

    def handle(self, request: Request, *, openai_models: Sequence[str] | None = None) -> Reply:
        """Answer one request: what to send back, after which delay, or that the line drops.

        With ``openai_models``, answer as a standalone OpenAI-compatible server serving
        those models (what :meth:`serve_openai` serves). An exception in the emulator itself
        is answered 500 ``internal_error`` and logged with the fault ``"emulator_bug"``.
        """
        models = None if openai_models is None else tuple(openai_models)
        with self._lock:
            request_id = self._state.new_id("req_")
            created = None
            try:
                now = self.clock.now()
                self._state.settle(now)
                fault = None
                if self._injector is not None:
                    fault = self._injector.decide(request.method, request.path)
                outcome = None
                if fault is None or fault.when == "after" or fault.kind not in _ANSWER_FAULTS:
                    if self._gpuaas is not None and models is None:
                        self._gpuaas.settle(now)
                        outcome = self._gpuaas.dispatch(request, now)
                    else:
                        outcome = self._api.dispatch(request, request_id, now, models)
                created = None if outcome is None else outcome.allocation_id
                if fault is not None:
                    outcome = apply_fault(fault, outcome, request_id)
                if models is not None or is_openai_path(request.path):
                    outcome = openai_error(outcome)
                reply = self._encode(request_id, outcome, None if fault is None else fault.kind)
                fault_name = None if fault is None else fault.kind.value
            except Exception:
                _LOG.exception(
                    "the emulator crashed on %s %s (%s)", request.method, request.path, request_id
                )
                bug = error_answer(
                    "internal_error",
                    "The emulator crashed on this request (an emulator bug; see its log).",
                    request_id,
                )
                reply = self._encode(request_id, bug, None)
                fault_name = _BUG
            request_headers = request.headers
            if "authorization" in request_headers:
                request_headers = {**request_headers, "authorization": "Bearer ***"}
            if "x-api-key" in request_headers:
                request_headers = {**request_headers, "x-api-key": "***"}
            self._exchanges.append(
                Exchange(
                    method=request.method,
                    path=request.path,
                    query=request.query,
                    request_headers=request_headers,
                    request_body=request.body,
                    status=reply.status,
                    response_headers=reply.headers,
                    response_body=reply.body,
                    request_id=request_id,
                    fault=fault_name,
                    idempotency_key=request.headers.get("idempotency-key"),
                    allocation_id=created,
                )
            )
            if reply.stream is not None:
                self._streams_started += 1
            return reply

    def _encode(
        self, request_id: str, outcome: Answer | None, corruption: FaultKind | None
    ) -> Reply:
        if outcome is None:
            return Reply(None, {})
        headers = {"x-request-id": request_id, **outcome.headers}
        stream = None
        body = b""
        if outcome.events is not None:
            headers["content-type"] = "text/event-stream"
            headers["cache-control"] = "no-cache"
            stream = EventStream(
                encode_events(outcome.events, corruption),
                self.stream_chunk_delay,
                functools.partial(self._stream_ended, len(self._exchanges), request_id),
            )
        elif outcome.payload is not None:
            body = encode_body(outcome.payload, corruption)
            headers["content-type"] = "application/json"
            headers["content-length"] = str(len(body))
        lost = functools.partial(self._reply_lost, len(self._exchanges), request_id)
        return Reply(outcome.status, headers, body, stream, outcome.delay, on_lost=lost)

    def _reply_lost(self, index: int, request_id: str) -> None:
        """The server could not send an answer it had decided: log it as a dropped line."""
        with self._lock:
            if index < len(self._exchanges) and self._exchanges[index].request_id == request_id:
                self._exchanges[index] = attrs.evolve(
                    self._exchanges[index], status=None, response_headers={}, response_body=b""
                )

    def _stream_ended(self, index: int, request_id: str, sent: bytes, completed: bool) -> None:
        with self._lock:
            if completed:
                self._streams_completed += 1
            else:
                self._streams_aborted += 1
            if index < len(self._exchanges) and self._exchanges[index].request_id == request_id:
                self._exchanges[index] = attrs.evolve(
                    self._exchanges[index], response_body=sent, aborted=not completed
                )

    @property
    def stream_chunk_delay(self) -> float:
        """Seconds between two streamed events (finite, >= 0)."""
        return self._stream_chunk_delay

    @stream_chunk_delay.setter
    def stream_chunk_delay(self, delay: float) -> None:
        check_delay("stream_chunk_delay", delay)
        self._stream_chunk_delay = delay

    # Adapters

    def transport(self) -> httpx.BaseTransport:
        """An httpx transport that answers in-process, without sockets."""
        from ._transports import EmulatorTransport

        return EmulatorTransport(self)

    def async_transport(self) -> httpx.AsyncBaseTransport:
        """An async httpx transport that answers in-process, without sockets."""
        from ._transports import AsyncEmulatorTransport

        return AsyncEmulatorTransport(self)

    def http_client(self, **kwargs: Any) -> httpx.Client:
        """An ``httpx.Client`` wired to this emulator (the URL's host is ignored)."""
        import httpx

        kwargs.setdefault("base_url", "http://emulator.local")
        return httpx.Client(transport=self.transport(), **kwargs)

    def async_http_client(self, **kwargs: Any) -> httpx.AsyncClient:
        """An ``httpx.AsyncClient`` wired to this emulator (the URL's host is ignored)."""
        import httpx

        kwargs.setdefault("base_url", "http://emulator.local")
        return httpx.AsyncClient(transport=self.async_transport(), **kwargs)

    @property
    def asgi_app(self) -> EmulatorApp:
        """This emulator as an ASGI 3 application, to serve with any ASGI server."""
        from ._asgi import EmulatorApp

        if self._app is None:
            self._app = EmulatorApp(self)
        return self._app

    @contextlib.contextmanager
    def serve(self, host: str = "127.0.0.1", port: int = 0) -> Iterator[str]:
        """Serve over real TCP (uvicorn, in a thread) while the block runs; yields the base URL."""
        from ._api import IN_PROCESS_ENDPOINTS
        from ._serve import bind, serve_in_thread

        # On gpuaas each exposed pod gets a port of its own, as a NodePort would be.
        pods = [bind(host, 0) for _ in range(_POD_PORTS if self._gpuaas else 0)]
        try:
            with serve_in_thread(self.asgi_app, host, port, also=pods) as base_url:
                self._api.endpoint_base = base_url  # allocations' endpoints, served here too
                self._pods_at(host, tuple(sock.getsockname()[1] for sock in pods))
                try:
                    yield base_url
                finally:
                    self._api.endpoint_base = IN_PROCESS_ENDPOINTS
                    self._pods_at("127.0.0.1", ())
        finally:
            for sock in pods:
                sock.close()

    def _pods_at(self, host: str, ports: tuple[int, ...]) -> None:
        if self._gpuaas is not None:
            with self._lock:
                self._gpuaas.pod_host, self._gpuaas.pod_ports = host, ports

    def openai_server(self, models: Sequence[str] | None = None) -> OpenAIServer:
        """A standalone OpenAI-compatible server (``/v1/chat/completions``,
        ``/v1/completions``, ``/v1/models``) on this emulator's faults, log and keys, serving
        ``models`` (default: every model of the pools). Hand it to ``EmulatorTransport``,
        ``AsyncEmulatorTransport`` or ``EmulatorApp``; :meth:`serve_openai` serves it."""
        if models is None:
            models = list(dict.fromkeys(m for pool in self.pools() for m in pool.models))
        return OpenAIServer(self, models)

    @contextlib.contextmanager
    def serve_openai(
        self, host: str = "127.0.0.1", port: int = 0, *, models: Sequence[str] | None = None
    ) -> Iterator[str]:
        """Serve :meth:`openai_server` over TCP while the block runs; yields its root URL
        (OpenAI clients take ``f"{url}/v1"`` as their base URL)."""
        from ._asgi import EmulatorApp
        from ._serve import serve_in_thread

        with serve_in_thread(EmulatorApp(self.openai_server(models)), host, port) as url:
            yield url

    # Inspection (and, in Hooks, live_allocations, allocations, get, pools)

    @property
    def exchanges(self) -> list[Exchange]:
        """Every request received so far, in order."""
        with self._lock:
            return list(self._exchanges)

    def requests_to(self, method: str | None = None, path: str = "*") -> list[Exchange]:
        """The exchanges for ``method`` (any if ``None``) on paths matching the glob ``path``."""
        method = None if method is None else method.upper()
        return [
            exchange
            for exchange in self.exchanges
            if (method is None or exchange.method == method) and fnmatchcase(exchange.path, path)
        ]

    def created_by_key(self) -> dict[str, list[str]]:
        """Idempotency key -> ids of the allocations created with it (never more than one)."""
        with self._lock:
            return self._state.created_by_key()

    @property
    def streams_started(self) -> int:
        """How many event streams were started."""
        return self._streams_started

    @property
    def streams_completed(self) -> int:
        """How many event streams were sent to their end."""
        return self._streams_completed

    @property
    def streams_aborted(self) -> int:
        """How many event streams the client closed (or dropped) before their end."""
        return self._streams_aborted

    @property
    def open_streams(self) -> int:
        """How many event streams are still being sent."""
        with self._lock:
            return self._streams_started - self._streams_completed - self._streams_aborted

    # Test hooks (Python calls, never subject to faults)

    @property
    def faults(self) -> FaultPlan | None:
        """The fault plan; setting one starts its sequence from the beginning."""
        return self._plan

    @faults.setter
    def faults(self, plan: FaultPlan | None) -> None:
        with self._lock:
            self._plan = plan
            self._injector = None if plan is None else FaultInjector(plan)

    def reset(self) -> None:
        """Back to the freshly built state: no allocations, subscriptions, keys, log or counters."""
        with self._lock:
            self._state.reset()
            self._api.health_status = "ok"
            self._clear()

    def _clear(self) -> None:
        self._injector = None if self._plan is None else FaultInjector(self._plan)
        self._exchanges: list[Exchange] = []
        self._streams_started = self._streams_completed = self._streams_aborted = 0
        if self._gpuaas is not None:
            self._gpuaas.reset()

    def __repr__(self) -> str:
        return f"<Emulator pools={[pool.id for pool in self._state.pools()]}>"
