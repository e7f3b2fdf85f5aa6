"""The circuit breaker: its transitions on a fake clock, then on a client end to end."""

from __future__ import annotations

import asyncio

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon import CircuitBreaker, CircuitBreakerConfig, CircuitState
from hostedai_harpoon.testing import Emulator, Fault, FaultPlan
from tests.client._support import ClientFactory, Flavor, call, mock_async_client, mock_client
from tests.conftest import EmulatorFactory

CLOSED, OPEN, HALF_OPEN = CircuitState.CLOSED, CircuitState.OPEN, CircuitState.HALF_OPEN


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_breaker(
    clock: FakeClock,
    *,
    threshold: float = 0.5,
    minimum_calls: int = 4,
    window: float = 10.0,
    open_duration: float = 5.0,
    probes: int = 1,
) -> CircuitBreaker:
    config = CircuitBreakerConfig(
        failure_rate_threshold=threshold,
        minimum_calls=minimum_calls,
        window=window,
        open_duration=open_duration,
        half_open_probes=probes,
    )
    return CircuitBreaker(config, clock=clock, name="api.test")


def attempt(breaker: CircuitBreaker, success: bool) -> None:
    breaker.record(breaker.acquire(), success)


def trip(breaker: CircuitBreaker) -> None:
    for _ in range(breaker.config.minimum_calls):
        attempt(breaker, False)
    assert breaker.state is OPEN


# Closed -> open


def test_a_new_breaker_is_closed_and_lets_calls_through() -> None:
    breaker = make_breaker(FakeClock())
    assert breaker.state is CLOSED
    assert breaker.acquire() is False


def test_it_stays_closed_below_the_minimum_number_of_calls() -> None:
    breaker = make_breaker(FakeClock(), minimum_calls=5)
    for _ in range(4):
        attempt(breaker, False)
    assert breaker.state is CLOSED
    attempt(breaker, False)
    assert breaker.state is OPEN


def test_it_opens_when_the_failure_rate_reaches_the_threshold() -> None:
    breaker = make_breaker(FakeClock(), threshold=0.5, minimum_calls=4)
    for success in (True, False, True):
        attempt(breaker, success)
    assert breaker.state is CLOSED
    attempt(breaker, False)  # 2 failures out of 4: 50%
    assert breaker.state is OPEN
    assert list(breaker.transitions) == [(CLOSED, OPEN)]


def test_it_stays_closed_while_the_failure_rate_is_below_the_threshold() -> None:
    breaker = make_breaker(FakeClock(), threshold=0.5, minimum_calls=4)
    for success in (True, True, False, True, True, False, True):
        attempt(breaker, success)
    assert breaker.state is CLOSED


def test_failures_older_than_the_window_are_forgotten() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, minimum_calls=4, window=10.0)
    for _ in range(3):
        attempt(breaker, False)
    clock.advance(10.5)
    attempt(breaker, False)
    assert breaker.state is CLOSED  # only one call left in the window
    for _ in range(3):
        attempt(breaker, False)
    assert breaker.state is OPEN


# Open


def test_an_open_breaker_refuses_and_says_when_it_will_try_again() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, open_duration=5.0)
    trip(breaker)
    clock.advance(2.0)
    with pytest.raises(harpoon.CircuitOpenError) as caught:
        breaker.acquire()
    assert caught.value.retry_after == pytest.approx(3.0)
    assert "api.test" in str(caught.value)


def test_outcomes_recorded_while_open_change_nothing() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    trip(breaker)
    breaker.record(False, True)
    clock.advance(4.9)
    assert breaker.state is OPEN


# Open -> half-open -> closed / open


def test_after_the_open_duration_it_is_half_open() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, open_duration=5.0)
    trip(breaker)
    clock.advance(4.99)
    assert breaker.state is OPEN
    clock.advance(0.01)
    assert breaker.state is HALF_OPEN
    assert list(breaker.transitions) == [(CLOSED, OPEN), (OPEN, HALF_OPEN)]


def test_half_open_lets_only_the_configured_number_of_probes_through() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, probes=2)
    trip(breaker)
    clock.advance(5.0)
    assert breaker.acquire() is True
    assert breaker.acquire() is True
    with pytest.raises(harpoon.CircuitOpenError) as caught:
        breaker.acquire()
    assert caught.value.retry_after is None


def test_half_open_closes_when_every_probe_succeeds() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, probes=2)
    trip(breaker)
    clock.advance(5.0)
    first, second = breaker.acquire(), breaker.acquire()
    breaker.record(first, True)
    assert breaker.state is HALF_OPEN
    breaker.record(second, True)
    assert breaker.state is CLOSED
    assert list(breaker.transitions)[-1] == (HALF_OPEN, CLOSED)
    assert breaker.acquire() is False


def test_half_open_reopens_when_a_probe_fails_for_a_full_open_duration() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, open_duration=5.0, probes=2)
    trip(breaker)
    clock.advance(5.0)
    breaker.record(breaker.acquire(), True)
    clock.advance(1.0)
    breaker.record(breaker.acquire(), False)
    assert breaker.state is OPEN
    assert list(breaker.transitions)[-1] == (HALF_OPEN, OPEN)
    clock.advance(4.9)
    assert breaker.state is OPEN
    clock.advance(0.1)
    assert breaker.state is HALF_OPEN


def test_a_closed_breaker_starts_from_a_clean_window() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, minimum_calls=4)
    trip(breaker)
    clock.advance(5.0)
    breaker.record(breaker.acquire(), True)
    assert breaker.state is CLOSED
    for _ in range(3):
        attempt(breaker, False)
    assert breaker.state is CLOSED


def test_an_abandoned_probe_is_given_back() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock, probes=1)
    trip(breaker)
    clock.advance(5.0)
    breaker.abandon(breaker.acquire())
    assert breaker.acquire() is True


def test_reset_closes_and_forgets() -> None:
    clock = FakeClock()
    breaker = make_breaker(clock)
    trip(breaker)
    breaker.reset()
    assert breaker.state is CLOSED
    for _ in range(3):
        attempt(breaker, False)
    assert breaker.state is CLOSED


@pytest.mark.parametrize(
    "bad",
    [
        {"failure_rate_threshold": 0.0},
        {"failure_rate_threshold": 1.5},
        {"minimum_calls": 0},
        {"half_open_probes": 0},
        {"open_duration": -1.0},
        {"window": float("inf")},
    ],
)
def test_a_nonsensical_configuration_is_refused(bad: dict[str, float]) -> None:
    [name] = bad
    with pytest.raises(harpoon.ConfigurationError, match=f"^{name} must"):
        CircuitBreakerConfig(**bad)  # type: ignore[arg-type]


# End to end, on a client


async def test_a_failing_host_opens_the_breaker_and_then_calls_are_not_sent(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = make_emulator(faults=FaultPlan(rules=[Fault("error", status=503)]))
    config = CircuitBreakerConfig(minimum_calls=4, open_duration=0.05)
    client = make_client(emu, max_retries=0, circuit_breaker=config)
    breaker = client.circuit_breaker
    assert breaker is not None
    for _ in range(4):
        with pytest.raises(harpoon.InternalServerError):
            await call(client, "health")
    assert breaker.state is OPEN
    with pytest.raises(harpoon.CircuitOpenError) as caught:
        await call(client, "health")
    assert caught.value.retry_after is not None
    assert 0 < caught.value.retry_after <= 0.05
    assert len(emu.exchanges) == 4  # refused without sending

    await asyncio.sleep(0.06)
    assert breaker.state is HALF_OPEN
    emu.faults = None
    assert (await call(client, "health")).status == "ok"
    assert breaker.state is CLOSED
    assert len(emu.exchanges) == 5
    assert list(breaker.transitions) == [(CLOSED, OPEN), (OPEN, HALF_OPEN), (HALF_OPEN, CLOSED)]


async def test_a_failed_probe_reopens_the_breaker_on_a_client(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = make_emulator(faults=FaultPlan(rules=[Fault("error", status=500)]))
    config = CircuitBreakerConfig(minimum_calls=2, open_duration=0.03)
    client = make_client(emu, max_retries=0, circuit_breaker=config)
    for _ in range(2):
        with pytest.raises(harpoon.InternalServerError):
            await call(client, "health")
    await asyncio.sleep(0.04)
    with pytest.raises(harpoon.InternalServerError):
        await call(client, "health")
    assert client.circuit_breaker is not None
    assert client.circuit_breaker.state is OPEN
    with pytest.raises(harpoon.CircuitOpenError):
        await call(client, "health")
    assert len(emu.exchanges) == 3


async def test_retries_count_attempt_by_attempt_and_stop_when_it_opens(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = make_emulator(faults=FaultPlan(rules=[Fault("error", status=502)]))
    config = CircuitBreakerConfig(minimum_calls=3)
    client = make_client(emu, max_retries=10, circuit_breaker=config)
    # The call was sent: it fails as its last attempt did, the refused retry noted on it.
    with pytest.raises(harpoon.InternalServerError) as raised:
        await call(client, "list_pools")
    assert len(emu.exchanges) == 3
    assert any("not retried" in note for note in raised.value.__notes__)
    with pytest.raises(harpoon.CircuitOpenError):  # the next call is refused outright
        await call(client, "list_pools")
    assert len(emu.exchanges) == 3


async def test_4xx_answers_do_not_count_as_failures(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    config = CircuitBreakerConfig(minimum_calls=2)
    client = make_client(emulator, circuit_breaker=config)
    for _ in range(5):
        with pytest.raises(harpoon.NotFoundError):
            await call(client, "get_pool", "no-such-pool")
    assert client.circuit_breaker is not None
    assert client.circuit_breaker.state is CLOSED


@pytest.mark.parametrize(
    "fault", [Fault("drop"), Fault("latency", delay=5.0)], ids=["dropped", "timeout"]
)
async def test_dropped_connections_and_timeouts_count_as_failures(
    make_emulator: EmulatorFactory, make_client: ClientFactory, fault: Fault
) -> None:
    emu = make_emulator(faults=FaultPlan(rules=[fault]))
    config = CircuitBreakerConfig(minimum_calls=2)
    client = make_client(emu, max_retries=0, timeout=0.02, circuit_breaker=config)
    for _ in range(2):
        with pytest.raises(harpoon.APIConnectionError):
            await call(client, "health")
    assert client.circuit_breaker is not None
    assert client.circuit_breaker.state is OPEN


async def test_without_a_breaker_failures_never_block_calls(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = make_emulator(faults=FaultPlan(rules=[Fault("error", status=500)]))
    client = make_client(emu, max_retries=0, circuit_breaker=None)
    assert client.circuit_breaker is None
    for _ in range(25):
        with pytest.raises(harpoon.InternalServerError):
            await call(client, "health")
    assert len(emu.exchanges) == 25


async def test_a_copy_shares_the_breaker_and_another_client_has_its_own(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = make_emulator(faults=FaultPlan(rules=[Fault("error", status=500)]))
    config = CircuitBreakerConfig(minimum_calls=2)
    client = make_client(emu, max_retries=0, circuit_breaker=config)
    other = make_client(emu, max_retries=0, circuit_breaker=config)
    for _ in range(2):
        with pytest.raises(harpoon.InternalServerError):
            await call(client, "health")
    with pytest.raises(harpoon.CircuitOpenError):
        await call(client.with_options(timeout=5.0), "health")
    with pytest.raises(harpoon.InternalServerError):
        await call(other, "health")


async def test_the_default_breaker_opens_after_ten_failing_calls(
    flavor: Flavor,
) -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(500)

    client = (mock_client if flavor == "sync" else mock_async_client)(handler, max_retries=0)
    for _ in range(10):
        with pytest.raises(harpoon.InternalServerError):
            await call(client, "health")
    with pytest.raises(harpoon.CircuitOpenError):
        await call(client, "health")
    assert len(sent) == 10
    assert client.circuit_breaker is not None
    assert repr(client.circuit_breaker) == "<CircuitBreaker '127.0.0.1:8080' state=open>"
