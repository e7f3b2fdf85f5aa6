"""``Orchestrator``: the front door combining the async client, leases and routing."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence

import attrs
from typing_extensions import Unpack

from .. import (
    AsyncHostedAI,
    CircuitBreakerConfig,
    ConfigurationError,
    HostedAIError,
    OrchestratorClosedError,
    UsageError,
)
from .._checks import check_callable, check_seconds
from .._leases import DEFAULT_LEASE_TTL
from ..routing import DEFAULT_TARGETS, ComplexityPolicy, RoutingPolicy, Target, Tier
from ._checks import (
    RenamedOptions,
    check_budget,
    check_durations,
    check_options,
    checked_limits,
    checked_targets,
    checked_warm,
    renamed_options,
    routed_request,
    session_targets,
    target_names,
)
from ._endpoints import endpoints_of
from ._engine import Engine, Routed
from ._fleet import Fleet
from ._group import Limits, Slot
from ._inflight import InFlight, settle
from ._live import LiveState, LocalLiveState
from ._redis import STATE_URL_ENV, RedisState
from ._replica import Replica
from ._results import HealthReport, RoutedResult, Snapshot, overall, with_costs
from ._session import Session, check_deadline, inference_options
from ._slots import Slots
from ._stream import RoutedStream
from ._upkeep import keep_warm

__all__ = ["Orchestrator"]

log = logging.getLogger("hostedai_harpoon")

# Seconds between two rounds of upkeep (idle release, min_warm), on the injected sleep.
_UPKEEP_EVERY = 1.0
_CUT_OFF_GRACE = 30.0
_TARGET_BREAKER = CircuitBreakerConfig(minimum_calls=4, window=60.0, open_duration=30.0)


class Orchestrator:
    """Routes each call to a target, runs it on a warm or freshly leased allocation, fails
    over, and leaves nothing behind. Async only (the sync client and leases are for scripts).

    ``client`` is an ``AsyncHostedAI`` (``None``: one made from the environment, and closed
    with the orchestrator; a client passed in is never closed). ``policy=None`` means
    ``ComplexityPolicy()``; a ``CascadePolicy`` is escalated by the orchestrator itself.
    A call tries up to ``max_attempts`` targets, within ``deadline`` seconds (``None``: no
    bound; each call may give its own). ``max_allocations`` caps the allocations per
    target held by the whole orchestrator, its warm pool and every session together (one
    number, or per target name; ``None``: no cap); an allocation counts from the start of
    its lease to the end of its release. ``min_warm`` keeps that many allocations per
    target name leased at all times, and ``idle_release`` lets go of the others once
    unused that many seconds. A caller finding every allocation busy waits its turn, first
    come first served, up to ``queue_timeout`` seconds; a new allocation is leased only
    when the callers waiting outnumber the places on those being leased. Closing lets
    calls in flight finish within ``drain_timeout`` seconds, then cancels them.

    ``circuit_breaker`` configures each target's own circuit breaker, ``error_window`` the
    seconds over which error rates are counted, ``pool_refresh`` the most seconds between
    two reads of the pools' free GPUs. ``ttl``, ``ready_timeout`` and ``capacity_timeout``
    go to each lease, as in ``client.allocate()`` (a full pool fails over at once by
    default), and so does ``max_lifetime`` (``None`` or seconds above 0: the package
    releases an allocation that long after it was leased, as the ``gpuaas`` platform has
    no TTL). An allocated target whose ``inference`` is ``None`` leases with the client's
    protocol (``client.inference``: ``"openai"`` on ``gpuaas``). The names of the last
    release, ``breaker=`` and ``lease_ttl=``, still work, with a ``DeprecationWarning``.
    ``clock`` (seconds, monotonic) and ``sleep`` drive the time-based behaviour (idle
    release, breaker cool-downs, budgets), so tests can replace them. ``state`` is where
    the orchestrator's state lives: ``None`` keeps it in this process (unless
    ``HOSTED_AI_STATE_URL`` names a Redis), a ``RedisState`` shares it with every replica
    of a fleet (``max_allocations`` then holds fleet-wide; docs/scale-out.md).

    Ranges: the durations are seconds from 0 to a week (``error_window`` above 0),
    ``ttl`` from 1 to 86,400; ``max_attempts`` and ``max_allocations`` are integers
    >= 1, ``min_warm`` a mapping of target names to integers >= 0; ``policy``, ``clock``
    and ``sleep`` are callables. Anything else is a ``ConfigurationError`` naming it, and
    so is a bad argument to ``allocate()`` or ``process()`` (``max_tokens`` from 1 to
    32,768, as the API takes; ``None``, the default everywhere: the server's default, which
    routing counts as the API's 256), before anything is sent.
    """

    def __init__(
        self,
        client: AsyncHostedAI | None = None,
        *,
        targets: Sequence[Target | str] = DEFAULT_TARGETS,
        policy: RoutingPolicy | None = None,
        max_attempts: int = 3,
        max_allocations: Limits = None,
        min_warm: Mapping[str, int] | None = None,
        idle_release: float = 300.0,
        queue_timeout: float = 30.0,
        drain_timeout: float = 10.0,
        pool_refresh: float = 5.0,
        error_window: float = 60.0,
        circuit_breaker: CircuitBreakerConfig = _TARGET_BREAKER,
        ttl: float = DEFAULT_LEASE_TTL,
        ready_timeout: float = 300.0,
        capacity_timeout: float = 0.0,
        max_lifetime: float | None = None,
        deadline: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        state: RedisState | None = None,
        **renamed: Unpack[RenamedOptions],
    ) -> None:
        if renamed:  # the names of the last release: breaker=, lease_ttl=
            circuit_breaker, ttl = renamed_options(renamed, circuit_breaker, ttl, _TARGET_BREAKER)
        if client is not None and not isinstance(client, AsyncHostedAI):
            raise UsageError(
                "client must be an AsyncHostedAI (the Orchestrator is async), not "
                f"{type(client).__name__}"
            )
        self._targets = checked_targets(targets)
        names = {target.name for target in self._targets}
        if type(max_attempts) is not int or max_attempts < 1:
            raise ConfigurationError(f"max_attempts must be an integer >= 1, got {max_attempts!r}")
        check_durations(
            idle_release=idle_release, queue_timeout=queue_timeout, drain_timeout=drain_timeout,
            pool_refresh=pool_refresh, ttl=ttl, ready_timeout=ready_timeout,
            capacity_timeout=capacity_timeout,
        )  # fmt: skip
        if max_lifetime is not None:
            check_seconds(max_lifetime, "max_lifetime", positive=True)
        check_seconds(error_window, "error_window", positive=True)
        check_options(policy, circuit_breaker, ttl, clock, sleep)
        self._max_allocations = checked_limits("max_allocations", max_allocations, names)
        self._min_warm = checked_warm(min_warm, names)
        # Endpoint targets need no client; only targets leased on GPUs do.
        leased = any(target.endpoint is None for target in self._targets)
        self._owns_client = client is None and leased
        self._client = AsyncHostedAI() if self._owns_client else client
        if self._client is not None:  # (allocated targets saying nothing lease with its own)
            protocol, dialect = self._client.inference, self._client.dialect
            wrong = [t.name for t in self._targets if t.inference == "hostedai" != protocol]
            if wrong:
                raise ConfigurationError(
                    f"targets {wrong} say inference='hostedai', which a {dialect} client does "
                    f"not have: leave it out (the client's is {protocol!r}) or name another"
                )
        self._policy: RoutingPolicy = ComplexityPolicy() if policy is None else policy
        self._idle_release = idle_release
        self._queue_timeout = queue_timeout
        self._drain_timeout = drain_timeout
        self._clock = clock
        self._sleep = sleep
        self._lease_options = {
            "ttl": ttl,
            "ready_timeout": ready_timeout,
            "capacity_timeout": capacity_timeout,
            "max_lifetime": max_lifetime,
        }
        if state is None and os.environ.get(STATE_URL_ENV):
            state = RedisState()
        if state is not None and not isinstance(state, RedisState):
            raise ConfigurationError(f"state must be a RedisState or None, got {state!r}")
        self._replica: Replica | None = None
        self._live: LiveState
        if state is None:
            self._live = LocalLiveState(
                self._targets,
                breaker=circuit_breaker,
                clock=clock,
                window=error_window,
                refresh=pool_refresh,
                pool_id=None if self._client is None else self._client.pool_id,
            )
            self._fleet = Fleet(self._max_allocations, clock=clock, sleep=sleep)
        else:
            if self._client is None:
                raise ConfigurationError(
                    "state= shares the allocations of a fleet; an Orchestrator of endpoint "
                    "targets alone has none (give it a client, or leave state out)"
                )
            self._replica = Replica(
                state, self._client, self._targets, self._max_allocations,
                breaker=circuit_breaker, clock=clock, sleep=sleep, window=error_window,
                refresh=pool_refresh,
            )  # fmt: skip
            self._live, self._fleet = self._replica.live, self._replica.fleet
        self._deadline = check_deadline(deadline)
        self._engine = Engine(self._client, self._live, max_attempts=max_attempts)
        self._endpoints = endpoints_of(self._targets)
        now = clock()
        for name, lease in self._endpoints.items():
            target = next(t for t in self._targets if t.name == name)
            self._fleet.endpoints[name] = Slot(target, lease, None, now)
        self._warm = self._slots(None)
        if self._replica is not None:  # the fleet's warm pool: the others' join ours
            self._replica.warm.attach(self._warm)
        self._calls = InFlight()
        self._scopes = (self._calls,)
        self._sessions: set[Session] = set()
        self._upkeep: asyncio.Task[None] | None = None
        self._upkeep_error: str | None = None
        self._closing: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        names = ", ".join(target.name for target in self._targets)
        state = "closed" if self._closing is not None else "open"
        return f"<Orchestrator {state} targets=[{names}] calls_in_flight={len(self._calls)}>"

    @property
    def client(self) -> AsyncHostedAI:
        """The client every allocation is leased with (``UsageError`` when every target is
        an endpoint target and none was given)."""
        if self._client is None:
            raise UsageError("this Orchestrator has no client: every target is an endpoint target")
        return self._client

    @property
    def targets(self) -> tuple[Target, ...]:
        """The targets routed over."""
        return self._targets

    def _slots(self, limits: Limits, budget: float | None = None) -> Slots:
        return Slots(
            self._client,
            self._live,
            self._fleet,
            limits=limits,
            queue_timeout=self._queue_timeout,
            clock=self._clock,
            lease_options=self._lease_options,
            budget=budget,
        )

    # Lifecycle

    async def __aenter__(self) -> Orchestrator:
        if self._closing is not None:
            self._check_open()
        if self._upkeep is None:
            self._upkeep = asyncio.get_running_loop().create_task(self._keep_up())
            if self._replica is not None:
                self._replica.start()
        await self._engine.read_pools()  # routing knows the pools from the first call on
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    def _check_open(self) -> None:
        if self._closing is not None:
            raise OrchestratorClosedError("the orchestrator is closed")
        if self._upkeep is None:  # never entered: nothing would release what it leases
            raise UsageError(
                "use `async with Orchestrator(...) as orchestrator:` before calling it "
                "(leaving the block releases every GPU it leased)"
            )

    async def aclose(self) -> None:
        """Stop taking calls, let those in flight finish within ``drain_timeout`` seconds,
        cancel the rest, and release every allocation held. Idempotent; ``close()`` is the
        same."""
        if self._closing is None:
            self._closing = asyncio.get_running_loop().create_task(self._close())
        await settle([self._closing])
        self._closing.result()

    async def _close(self) -> None:
        if self._upkeep is not None:
            self._upkeep.cancel()
        try:
            if not await self._calls.drained(self._drain_timeout):
                self._calls.cut_off()
                await self._calls.drained(_CUT_OFF_GRACE)
            for session in list(self._sessions):
                await session.aclose()
        finally:
            self._engine.stop()
            self._fleet.stop()
            await self._warm.aclose()
            if self._upkeep is not None:
                await asyncio.gather(self._upkeep, return_exceptions=True)
            for lease in self._endpoints.values():
                await lease.endpoint.aclose()
            if self._replica is not None:
                await self._replica.aclose()
            if self._owns_client and self._client is not None:
                await self._client.close()

    close = aclose

    async def _keep_up(self) -> None:
        """Run the upkeep rounds; should they die, say so: in the log (ERROR) and in
        ``health()``, whose verdict is then ``"degraded"`` at best."""
        try:
            await self._upkeep_rounds()
        except Exception as exc:
            self._upkeep_error = f"{type(exc).__name__}: {exc}"
            log.error(
                "the orchestrator's upkeep stopped (idle release and min_warm stop with it): %s",
                self._upkeep_error,
                exc_info=exc,
            )

    async def _upkeep_rounds(self) -> None:
        """Keep ``min_warm`` allocations per target and let go of idle ones, forever."""
        while True:
            min_warm: Mapping[str, int] = self._min_warm
            if self._replica is not None:  # per fleet: kept by one replica (docs/scale-out.md)
                min_warm = self._replica.min_warm(min_warm)
            await keep_warm(self._warm, self._targets, min_warm)
            self._warm.release_idle(self._idle_release, min_warm)
            await self._sleep(_UPKEEP_EVERY)

    # Calls

    async def infer(
        self,
        prompt: str,
        *,
        target: Target | str | None = None,
        tier: Tier | str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
        deadline: float | None = None,
    ) -> RoutedResult:
        """One-shot: route ``prompt`` (or honour ``target=``), run it on a warm allocation
        or a newly leased one that then stays warm, and fail over when the target fails.

        ``deadline`` (seconds; default: the orchestrator's) bounds the whole call, every
        target and lease included. Raises ``AllAttemptsFailedError`` (carrying every
        attempt) when no attempt succeeded, ``APITimeoutError`` when the deadline passed,
        the request's own error (400, 401, 403, 404, 422) at once, and
        ``OrchestratorClosedError`` once the orchestrator is closing.
        """
        if self._closing is not None or self._upkeep is None:
            self._check_open()
        return await self._engine.infer(
            self._routed(prompt, target, tier, max_tokens, temperature, stop, deadline)
        )

    async def process(
        self,
        text: str,
        *,
        target: Target | str | None = None,
        tier: Tier | str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
        deadline: float | None = None,
    ) -> RoutedResult:
        """``infer()`` under the proof of concept's name for it (the same call)."""
        if self._closing is not None or self._upkeep is None:
            self._check_open()
        return await self._engine.infer(
            self._routed(text, target, tier, max_tokens, temperature, stop, deadline, "text")
        )

    def stream(
        self,
        prompt: str,
        *,
        target: Target | str | None = None,
        tier: Tier | str | None = None,
        max_tokens: int | None = None,
        temperature: float | None = None,
        stop: str | list[str] | None = None,
        deadline: float | None = None,
    ) -> RoutedStream:
        """One-shot routed stream on the warm pool: ``async with orchestrator.stream(...)
        as chunks``. It fails over only before its first chunk; ``deadline`` bounds the
        time to it."""
        call = self._routed(prompt, target, tier, max_tokens, temperature, stop, deadline)
        return RoutedStream(self._engine, call, self._check_open)

    def _routed(
        self,
        prompt: str,
        target: Target | str | None,
        tier: Tier | str | None,
        max_tokens: int | None,
        temperature: float | None,
        stop: str | list[str] | None,
        deadline: float | None,
        text_name: str = "prompt",
    ) -> Routed:
        request = routed_request(
            self._engine, None, text_name, prompt, max_tokens, temperature, stop, target, tier
        )
        return Routed(
            self._warm,
            self._policy,
            request,
            inference_options(temperature, stop),
            None,
            self._scopes,
            self._deadline if deadline is None else check_deadline(deadline),
        )

    def allocate(
        self,
        *,
        targets: Iterable[Target | str] | None = None,
        policy: RoutingPolicy | None = None,
        prewarm: Iterable[Target | str] = (),
        max_allocations: Limits = None,
        budget: float | None = None,
        require_prewarm: bool = False,
    ) -> Session:
        """A scope of GPU use: ``async with orchestrator.allocate(...) as session``.

        ``targets`` narrows the targets the session routes over (names accepted),
        ``policy`` replaces the orchestrator's for the session, ``prewarm`` names targets
        to lease on entering (what cannot be leased is in ``session.prewarm_errors``;
        with ``require_prewarm=True`` the session does not open and an
        ``AllocationError`` names each target and why), ``max_allocations`` caps the
        session's own allocations per target (within the orchestrator's cap, which
        counts every scope) and ``budget`` the dollars it may spend (a finite number >= 0;
        ``None``: no cap).
        """
        if type(require_prewarm) is not bool:
            raise ConfigurationError(
                f"require_prewarm must be True or False, got {require_prewarm!r}"
            )
        self._check_open()
        known = {target.name: target for target in self._targets}
        names = session_targets(targets, known)
        check_budget(budget)
        check_callable(policy, "policy", optional=True)
        session = Session(
            self._engine,
            self._slots(checked_limits("max_allocations", max_allocations, set(known)), budget),
            self._policy if policy is None else policy,
            names,
            [known[name] for name in target_names(prewarm, known, "prewarm")],
            budget,
            self._calls,
            self._check_open,
            self._sessions.discard,
            self._deadline,
            require_prewarm,
        )
        self._sessions.add(session)
        return session

    # For people

    def snapshot(self) -> Snapshot:
        """Counters per target and in total: requests, errors, failovers, in flight, warm
        allocations, tokens, GPU-seconds held, estimated cost and idle cost, latency
        p50/p95."""
        snapshot = self._live.snapshot()
        if self._replica is not None:
            snapshot = attrs.evolve(snapshot, shared_state=self._replica.status())
        now = self._clock()
        busy = {name: slot.cost(now) for name, slot in self._fleet.endpoints.items()}
        idle: dict[str, float] = {}
        for slots in (self._warm, *(session._slots for session in self._sessions)):
            for name, dollars in slots.idle_by_target().items():
                idle[name] = idle.get(name, 0.0) + dollars
        return with_costs(snapshot, busy, idle)

    async def health(self) -> HealthReport:
        """The API's health, each target's live state with a verdict, and an overall one
        (at best ``"degraded"`` once the background upkeep has died: ``upkeep_error``)."""
        api, api_error = None, None
        if self._client is not None:  # (only endpoint targets: no API to ask)
            try:
                api = await self._client.health()
            except HostedAIError as exc:
                api_error = f"{type(exc).__name__}: {exc}"
        await self._engine.read_pools()
        targets = {health.target.name: health for health in self._live.health()}
        shared = "local" if self._replica is None else self._replica.status()
        shared_up = self._replica is None or self._replica.store.up is not False
        api_ok = api.status == "ok" if api is not None else self._client is None
        reached = api is not None or self._client is None
        verdict = overall(reached, api_ok, targets, not self._upkeep_error and shared_up)
        return HealthReport(
            verdict, api, api_error, targets, upkeep_error=self._upkeep_error, shared_state=shared
        )
