"""A bad-value fuzz over the public constructors and calls.

Every argument of every public constructor and call is given, one at a time, each value of
``VALUES`` that lies outside its documented range (the range is the predicate next to the
argument's name below; values inside it are skipped). Each must be refused with a
``ConfigurationError`` (``UsageError`` included) whose message names the argument as the
caller spelled it, and before anything is sent: the emulator counts the requests. A value
accepted, an error of another type, or a message naming something else is a finding; the
test lists every finding, so one run shows them all. Bounded by count: arguments times
values, each tried once.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import timedelta
from typing import Any

import attrs
import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.routing import (
    CascadePolicy,
    ComplexityPolicy,
    CostPolicy,
    FallbackPolicy,
    LatencyPolicy,
    RouteRequest,
    Target,
    Tier,
    WeightedPolicy,
)
from hostedai_harpoon.testing import Emulator

pytestmark = pytest.mark.timeout(120)

URL = "http://127.0.0.1:8080"
KEY = "sk-fuzz"
SMALL = harpoon.DEFAULT_TARGETS[0]

VALUES: tuple[tuple[str, object], ...] = (
    ("None", None),
    ("nan", math.nan),
    ("inf", math.inf),
    ("-inf", -math.inf),
    ("-1", -1),
    ("-0.5", -0.5),
    ("0", 0),
    ("0.0", 0.0),
    ("1.5", 1.5),
    ("10**100", 10**100),
    ("1e300", 1e300),
    ("''", ""),
    ("'x'", "x"),
    ("lone surrogate", "\ud800"),
    ("True", True),
    ("False", False),
    ("object()", object()),
    ("[]", []),
    ("['x']", ["x"]),
    ("{}", {}),
    ("{'x': 1}", {"x": 1}),
    ("b'x'", b"x"),
)

# The documented ranges ---------------------------------------------------------------------

WEEK = 7 * 24 * 3600.0
Valid = Callable[[object], bool]


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def seconds(*, optional: bool = False, positive: bool = False, minimum: float = 0.0) -> Valid:
    """A finite number of seconds from ``minimum`` (above 0 with ``positive``) to a week."""

    def valid(value: object) -> bool:
        if value is None:
            return optional
        if not _number(value):
            return False
        number = float(value)  # type: ignore[arg-type]
        low_ok = number > 0 if positive else number >= minimum
        return low_ok and number <= WEEK

    return valid


def integer(low: int, high: float = math.inf, *, optional: bool = False) -> Valid:
    def valid(value: object) -> bool:
        if value is None:
            return optional
        return type(value) is int and low <= value <= high

    return valid


def number(low: float, high: float, *, optional: bool = False, open_low: bool = False) -> Valid:
    def valid(value: object) -> bool:
        if value is None:
            return optional
        if not _number(value) or not math.isfinite(value):  # type: ignore[arg-type]
            return False
        return (low < value if open_low else low <= value) and value <= high  # type: ignore[operator]

    return valid


def _sendable(value: object) -> bool:
    if type(value) is not str or not value:
        return False
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def text(*, optional: bool = False) -> Valid:
    return lambda value: (optional and value is None) or _sendable(value)


def header_text(*, optional: bool = False) -> Valid:
    def valid(value: object) -> bool:
        if value is None:
            return optional
        return (
            isinstance(value, str) and _sendable(value) and value.isascii() and value.isprintable()
        )

    return valid


def flag(value: object) -> bool:
    return type(value) is bool


def instance(*kinds: type, optional: bool = False) -> Valid:
    return lambda value: (optional and value is None) or isinstance(value, kinds)


def function(*, optional: bool = False) -> Valid:
    return lambda value: (optional and value is None) or callable(value)


def ttl(value: object) -> bool:
    if value is None or isinstance(value, timedelta):
        return True
    return _number(value) and 0 < value <= 86_400  # type: ignore[operator]


def stop(value: object) -> bool:
    if value is None or type(value) is str:
        return value is None or _sendable(value)
    return isinstance(value, list | tuple) and 1 <= len(value) <= 4 and all(map(_sendable, value))


def tier(value: object) -> bool:
    return isinstance(value, Tier) or value in ("small", "medium", "large")


def optional_tier(value: object) -> bool:
    return value is None or tier(value)


def pin(value: object) -> bool:
    """A target pin: a Target, a known target's name, or None."""
    return value is None or isinstance(value, Target) or value in (SMALL.name, "qwen3-30b-a3b")


def ref(value: object) -> bool:
    """A target, or a non-empty name."""
    return isinstance(value, Target) or _sendable(value)


def refs(*, optional: bool = False, empty: bool = True) -> Valid:
    """A sequence (not a string) of target references."""

    def valid(value: object) -> bool:
        if value is None:
            return optional
        return isinstance(value, list | tuple) and (empty or bool(value)) and all(map(ref, value))

    return valid


def known_refs(*, optional: bool = False, empty: bool = True) -> Valid:
    """Targets of the orchestrator, by name: an iterable (not a string) of known names."""

    def valid(value: object) -> bool:
        if value is None:
            return optional
        return isinstance(value, list | tuple) and (empty or bool(value)) and all(map(pin, value))

    return valid


def limits(value: object) -> bool:
    """``None``, a count >= 1, or a mapping of known target names to counts >= 1."""
    if value is None or (type(value) is int and value >= 1):
        return True
    return isinstance(value, Mapping) and all(
        pin(name) and type(count) is int and count >= 1 for name, count in value.items()
    )


def warm_counts(value: object) -> bool:
    return value is None or (
        isinstance(value, Mapping)
        and all(pin(k) and type(v) is int and v >= 0 for k, v in value.items())
    )


def weights(value: object) -> bool:
    return value is None or (
        isinstance(value, Mapping)
        and all(ref(k) and number(0, math.inf)(v) for k, v in value.items())
    )


def prompts(value: object) -> bool:
    return isinstance(value, list | tuple) and bool(value) and all(map(_sendable, value))


def headers(value: object) -> bool:
    return value is None or (
        isinstance(value, Mapping)
        and all(header_text()(k) and header_text()(v) for k, v in value.items())
    )


def timeout(value: object) -> bool:
    return isinstance(value, httpx.Timeout) or seconds(optional=True, positive=True)(value)


# The surfaces ------------------------------------------------------------------------------

Invoke = Callable[[dict[str, object]], object]


@attrs.frozen
class Surface:
    """A public constructor or call: its arguments' documented ranges, and how to call it
    with some of them given (the rest left at their defaults or set to good values)."""

    name: str
    arguments: Mapping[str, Valid]
    invoke: Invoke


@attrs.define
class World:
    """What the surfaces call: clients on a counting emulator, an allocation, an
    orchestrator and an open session."""

    emulator: Emulator
    sync: harpoon.HostedAI
    aclient: harpoon.AsyncHostedAI
    allocation_id: str
    orchestrator: harpoon.Orchestrator
    session: Any


def _drain_sync(stream: Any) -> None:
    for _ in stream:
        pass


async def _drain_async(stream: Any) -> None:
    async with stream as chunks:
        async for _ in chunks:
            pass


async def _use_session(session: Any) -> None:
    async with session:
        pass


CLIENT_ARGUMENTS: dict[str, Valid] = {
    "base_url": lambda value: value is None,  # no good URL among the values
    "api_key": header_text(optional=True),
    "pool_id": text(optional=True),
    "timeout": timeout,
    "max_retries": integer(0, 100),
    "deadline": seconds(optional=True, positive=True),
    "retry": instance(harpoon.RetryPolicy, optional=True),
    "circuit_breaker": instance(harpoon.CircuitBreakerConfig, optional=True),
    "allow_insecure_http": flag,
    "default_headers": headers,
    "max_response_bytes": integer(1),
    "max_allocations_per_pool": integer(1, optional=True),
}
ALLOCATE_ARGUMENTS: dict[str, Valid] = {
    "model": text(),
    "gpus": integer(1, 64),
    "gpu_type": text(optional=True),
    "pool_id": text(optional=True),
    "ttl": ttl,
    "ready_timeout": seconds(),
    "capacity_timeout": seconds(),
    "release_timeout": seconds(positive=True),
    "renew_interval": seconds(optional=True, minimum=0.05),
    "idempotency_key": header_text(optional=True),
}
CREATE_ARGUMENTS: dict[str, Valid] = {
    **{k: v for k, v in ALLOCATE_ARGUMENTS.items() if "timeout" not in k and k != "renew_interval"},
    "timeout": timeout,
}
INFER_ARGUMENTS: dict[str, Valid] = {
    "allocation_id": text(),
    "prompt": text(),
    "model": text(optional=True),
    "max_tokens": integer(1, 32_768, optional=True),
    "temperature": number(0, 2, optional=True),
    "stop": stop,
    "timeout": timeout,
}
ROUTED_ARGUMENTS: dict[str, Valid] = {
    "max_tokens": integer(1, 32_768, optional=True),
    "temperature": number(0, 2, optional=True),
    "stop": stop,
    "target": pin,
    "tier": optional_tier,
}


def _client_kwargs(given: dict[str, object], http: object) -> Any:
    return {"base_url": URL, "api_key": KEY, "http_client": http, **given}


def surfaces(world: World) -> list[Surface]:
    sync, aclient, orch = world.sync, world.aclient, world.orchestrator
    allocation = {"allocation_id": world.allocation_id, "prompt": "hi"}

    def routed(given: dict[str, object], key: str) -> dict[str, Any]:
        return {key: "hi", **given}

    return [
        Surface(
            "HostedAI()",
            CLIENT_ARGUMENTS,
            lambda given: harpoon.HostedAI(**_client_kwargs(given, sync._http)),
        ),
        Surface(
            "AsyncHostedAI()",
            CLIENT_ARGUMENTS,
            lambda given: harpoon.AsyncHostedAI(**_client_kwargs(given, aclient._http)),
        ),
        Surface(
            "HostedAI.with_options()",
            {k: CLIENT_ARGUMENTS[k] for k in ("pool_id", "timeout", "max_retries", "deadline")}
            | {"retry": instance(harpoon.RetryPolicy)},
            lambda given: sync.with_options(**given),  # type: ignore[arg-type]
        ),
        Surface(
            "AsyncHostedAI.with_options()",
            {k: CLIENT_ARGUMENTS[k] for k in ("pool_id", "timeout", "max_retries", "deadline")}
            | {"retry": instance(harpoon.RetryPolicy)},
            lambda given: aclient.with_options(**given),  # type: ignore[arg-type]
        ),
        Surface(
            "HostedAI.allocate()",
            ALLOCATE_ARGUMENTS,
            lambda given: sync.allocate(**{"model": SMALL.model, **given}),  # type: ignore[arg-type]
        ),
        Surface(
            "AsyncHostedAI.allocate()",
            ALLOCATE_ARGUMENTS,
            lambda given: aclient.allocate(**{"model": SMALL.model, **given}),  # type: ignore[arg-type]
        ),
        Surface(
            "HostedAI.create_allocation()",
            CREATE_ARGUMENTS,
            lambda given: sync.create_allocation(**{"model": SMALL.model, **given}),  # type: ignore[arg-type]
        ),
        Surface(
            "AsyncHostedAI.create_allocation()",
            CREATE_ARGUMENTS,
            lambda given: aclient.create_allocation(**{"model": SMALL.model, **given}),  # type: ignore[arg-type]
        ),
        Surface(
            "HostedAI.infer()",
            INFER_ARGUMENTS,
            lambda given: sync.infer(**{**allocation, **given}),  # type: ignore[arg-type]
        ),
        Surface(
            "AsyncHostedAI.infer()",
            INFER_ARGUMENTS,
            lambda given: aclient.infer(**{**allocation, **given}),  # type: ignore[arg-type]
        ),
        Surface(
            "HostedAI.stream()",
            INFER_ARGUMENTS,
            lambda given: _drain_sync(sync.stream(**{**allocation, **given})),  # type: ignore[arg-type]
        ),
        Surface(
            "AsyncHostedAI.stream()",
            INFER_ARGUMENTS,
            lambda given: _drain_async(aclient.stream(**{**allocation, **given})),  # type: ignore[arg-type]
        ),
        Surface(
            "RetryPolicy()",
            {
                "max_retries": integer(0, 100),
                "initial_backoff": seconds(),
                "max_backoff": seconds(),
                "max_retry_after": seconds(),
                "jitter": flag,
            },
            lambda given: harpoon.RetryPolicy(**given),  # type: ignore[arg-type]
        ),
        Surface(
            "CircuitBreakerConfig()",
            {
                "failure_rate_threshold": number(0, 1, open_low=True),
                "minimum_calls": integer(1),
                "window": seconds(positive=True),
                "open_duration": seconds(),
                "half_open_probes": integer(1),
            },
            lambda given: harpoon.CircuitBreakerConfig(**given),  # type: ignore[arg-type]
        ),
        Surface(
            "Target()",
            {
                "name": text(),
                "tier": tier,
                "model": text(),
                "pool": text(optional=True),
                "gpus": integer(1, 64),
                "gpu_type": text(optional=True),
                "cost_per_gpu_hour": number(0, math.inf),
                "max_concurrency": integer(1),
                "context_tokens": integer(1),
                "max_tokens": integer(1),
            },
            lambda given: Target(**{"name": "t", "tier": "small", **given}),  # type: ignore[arg-type]
        ),
        Surface(
            "RouteRequest()",
            {
                "prompt": text(),
                "max_tokens": integer(1),
                "target": lambda value: value is None or ref(value),
                "tier": optional_tier,
            },
            lambda given: RouteRequest(**{"prompt": "hi", **given}),  # type: ignore[arg-type]
        ),
        Surface(
            "ComplexityPolicy()",
            {"threshold": number(0, 1)},
            lambda given: ComplexityPolicy(**given),  # type: ignore[arg-type]
        ),
        Surface(
            "ComplexityPolicy().calibrate()",
            {"prompts": prompts, "large_share": number(0, 1)},
            lambda given: ComplexityPolicy().calibrate(**{"prompts": ["hi"], **given}),  # type: ignore[arg-type]
        ),
        Surface(
            "ComplexityPolicy().score()",
            {"request": lambda value: isinstance(value, RouteRequest) or _sendable(value)},
            lambda given: ComplexityPolicy().score(**given),  # type: ignore[arg-type]
        ),
        Surface("CostPolicy()", {}, lambda given: CostPolicy(**given)),
        Surface(
            "LatencyPolicy()",
            {"seed": integer(-math.inf), "prior_latency": seconds()},  # type: ignore[arg-type]
            lambda given: LatencyPolicy(**given),  # type: ignore[arg-type]
        ),
        Surface(
            "WeightedPolicy()",
            {"weights": weights, "seed": integer(-math.inf)},  # type: ignore[arg-type]
            lambda given: WeightedPolicy(**given),  # type: ignore[arg-type]
        ),
        Surface(
            "CascadePolicy()",
            {"order": refs(optional=True, empty=False), "accept": function(optional=True)},
            lambda given: CascadePolicy(**given),  # type: ignore[arg-type]
        ),
        Surface(
            "FallbackPolicy()",
            {"policy": function(), "fallbacks": refs()},
            lambda given: FallbackPolicy(**{"policy": CostPolicy(), "fallbacks": [], **given}),  # type: ignore[arg-type]
        ),
        Surface(
            "Orchestrator()",
            {
                "client": instance(harpoon.AsyncHostedAI, optional=True),
                "targets": known_refs(empty=False),
                "policy": function(optional=True),
                "max_attempts": integer(1),
                "max_allocations": limits,
                "min_warm": warm_counts,
                "idle_release": seconds(),
                "queue_timeout": seconds(),
                "drain_timeout": seconds(),
                "pool_refresh": seconds(),
                "error_window": seconds(positive=True),
                "circuit_breaker": instance(harpoon.CircuitBreakerConfig),
                "ttl": ttl,
                "ready_timeout": seconds(),
                "capacity_timeout": seconds(),
                "clock": function(),
                "sleep": function(),
            },
            lambda given: harpoon.Orchestrator(**{"client": aclient, **given}),  # type: ignore[arg-type]
        ),
        Surface(
            "Orchestrator.allocate()",
            {
                "targets": known_refs(optional=True, empty=False),
                "policy": function(optional=True),
                "prewarm": known_refs(),
                "max_allocations": limits,
                "budget": number(0, math.inf, optional=True),
            },
            lambda given: _use_session(orch.allocate(**given)),  # type: ignore[arg-type]
        ),
        Surface(
            "Orchestrator.process()",
            {"text": text(), **ROUTED_ARGUMENTS},
            lambda given: orch.process(**routed(given, "text")),
        ),
        Surface(
            "Session.infer()",
            {"prompt": text(), **ROUTED_ARGUMENTS},
            lambda given: world.session.infer(**routed(given, "prompt")),
        ),
        Surface(
            "Session.stream()",
            {"prompt": text(), **ROUTED_ARGUMENTS},
            lambda given: _drain_async(world.session.stream(**routed(given, "prompt"))),
        ),
    ]


def _names(message: str, argument: str) -> bool:
    word = rf"(?<![A-Za-z0-9_]){re.escape(argument)}(?![A-Za-z0-9_])"
    return re.search(word, message) is not None


@attrs.define
class Findings:
    unclear: list[str] = attrs.Factory(list)
    accepted: list[str] = attrs.Factory(list)
    sent: list[str] = attrs.Factory(list)
    tried: int = 0

    def report(self) -> str:
        lines = [f"{len(self.unclear)} unclear refusals:", *self.unclear]
        lines += [f"{len(self.accepted)} accepted out of range:", *self.accepted]
        lines += [f"{len(self.sent)} sent before refusing:", *self.sent]
        return "\n  ".join(lines)


async def fuzz(world: World, surface: Surface, findings: Findings) -> None:
    for argument, valid in surface.arguments.items():
        for label, value in VALUES:
            if valid(value):
                continue
            findings.tried += 1
            where = f"{surface.name} {argument}={label}"
            before = len(world.emulator.exchanges)
            try:
                outcome = surface.invoke({argument: value})
                if inspect.iscoroutine(outcome):
                    await outcome
            except harpoon.ConfigurationError as exc:
                if not _names(str(exc), argument):
                    findings.unclear.append(f"{where}: {type(exc).__name__}: {exc}")
            except Exception as exc:
                findings.unclear.append(f"{where}: {type(exc).__name__}: {exc}")
            else:
                findings.accepted.append(where)
            if len(world.emulator.exchanges) != before:
                findings.sent.append(where)


@pytest.fixture
async def world(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[World]:
    for variable in ("HOSTED_AI_BASE_URL", "HOSTED_AI_API_KEY", "HOSTED_AI_POOL_ID"):
        monkeypatch.delenv(variable, raising=False)
    emu = Emulator()
    fast = harpoon.RetryPolicy(max_retries=0)
    with emu.http_client() as sync_http:
        async with emu.async_http_client() as async_http:
            sync = harpoon.HostedAI(URL, KEY, http_client=sync_http, retry=fast)
            aclient = harpoon.AsyncHostedAI(URL, KEY, http_client=async_http, retry=fast)
            allocation = sync.create_allocation(SMALL.model)
            async with harpoon.Orchestrator(aclient) as orch, orch.allocate() as session:
                yield World(emu, sync, aclient, allocation.id, orch, session)


SURFACES = [
    "HostedAI()", "AsyncHostedAI()", "HostedAI.with_options()", "AsyncHostedAI.with_options()",
    "HostedAI.allocate()", "AsyncHostedAI.allocate()", "HostedAI.create_allocation()",
    "AsyncHostedAI.create_allocation()", "HostedAI.infer()", "AsyncHostedAI.infer()",
    "HostedAI.stream()", "AsyncHostedAI.stream()", "RetryPolicy()", "CircuitBreakerConfig()",
    "Target()", "RouteRequest()", "ComplexityPolicy()", "ComplexityPolicy().calibrate()",
    "ComplexityPolicy().score()", "CostPolicy()", "LatencyPolicy()", "WeightedPolicy()",
    "CascadePolicy()", "FallbackPolicy()", "Orchestrator()", "Orchestrator.allocate()",
    "Orchestrator.process()", "Session.infer()", "Session.stream()",
]  # fmt: skip


@pytest.mark.parametrize("name", SURFACES)
async def test_every_bad_value_is_refused_clearly_before_anything_is_sent(
    world: World, name: str
) -> None:
    [surface] = [surface for surface in surfaces(world) if surface.name == name]
    findings = Findings()
    await fuzz(world, surface, findings)
    assert (findings.unclear, findings.accepted, findings.sent) == ([], [], []), findings.report()
    assert findings.tried >= 5 * len(surface.arguments)


def test_the_fuzz_covers_every_surface_and_many_values() -> None:
    """The table above is the one the parametrized test runs, and it is not a token one."""
    # Nothing is called here: only the tables are counted.
    fake = World(None, None, None, "a", None, None)  # type: ignore[arg-type]
    listed = surfaces(fake)
    assert [surface.name for surface in listed] == SURFACES
    tried = sum(
        1
        for surface in listed
        for valid in surface.arguments.values()
        for _, value in VALUES
        if not valid(value)
    )
    assert tried > 1_500


# The examples the issue named, each pinned to its message --------------------------------

# Typed as Any: these are the wrong types on purpose.
INF: Any = math.inf
NONE: Any = None
ONE: Any = 1
X: Any = "x"


def orchestrator(world: World, **options: Any) -> harpoon.Orchestrator:
    return harpoon.Orchestrator(world.aclient, **options)


EXAMPLES: list[tuple[str, Callable[[World], object], str]] = [
    ("allocate(prewarm=None)", lambda w: w.orchestrator.allocate(prewarm=NONE), "^prewarm must"),
    ("RetryPolicy(max_retries=inf)", lambda w: harpoon.RetryPolicy(max_retries=INF), "^max_retr"),
    ("CircuitBreakerConfig(window=-1)", lambda w: harpoon.CircuitBreakerConfig(window=-1), "^wi"),
    ("process(text=1)", lambda w: w.orchestrator.process(ONE), "^text must"),
    ("HostedAI(base_url=1)", lambda w: harpoon.HostedAI(ONE, KEY), "^base_url must"),
    ("Orchestrator(sleep=None)", lambda w: orchestrator(w, sleep=None), "^sleep must"),
    ("Orchestrator(queue_timeout=inf)", lambda w: orchestrator(w, queue_timeout=INF), "^queue_"),
    ("Orchestrator(drain_timeout=inf)", lambda w: orchestrator(w, drain_timeout=INF), "^drain_"),
    ("Orchestrator(idle_release=inf)", lambda w: orchestrator(w, idle_release=INF), "^idle_"),
    ("infer(timeout=0)", lambda w: w.aclient.infer(w.allocation_id, "hi", timeout=0), "^timeout"),
    ("CascadePolicy(accept=1)", lambda w: CascadePolicy(accept=ONE), r"^CascadePolicy\.accept"),
    ("RouteRequest(prompt='')", lambda w: RouteRequest(prompt=""), r"^RouteRequest\.prompt"),
    ("WeightedPolicy(seed='x')", lambda w: WeightedPolicy(seed=X), r"^WeightedPolicy\.seed"),
    ("create_allocation(gpus=10**100)", lambda w: w.sync.create_allocation("m", 10**100), "^gpus"),
]  # fmt: skip


async def _called(make: Callable[[World], object], world: World) -> None:
    made = make(world)
    if inspect.iscoroutine(made):
        await made


@pytest.mark.parametrize(("example", "make", "message"), EXAMPLES, ids=[e[0] for e in EXAMPLES])
async def test_the_examples_of_the_issue_are_refused_before_anything_is_sent(
    world: World, example: str, make: Callable[[World], object], message: str
) -> None:
    before = [e.path for e in world.emulator.exchanges]  # the fixture's own
    with pytest.raises(harpoon.ConfigurationError, match=message):
        await _called(make, world)
    assert [e.path for e in world.emulator.exchanges] == before
