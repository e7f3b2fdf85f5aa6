"""The planner on its own (``hostedai_harpoon/_http/_plan.py``), run by a fake driver: no
server, no client, no clock but a manual one. Each test scripts the outcome of every attempt
and reads the steps the plan asked for."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon._config import Secret
from hostedai_harpoon._http import _api as api
from hostedai_harpoon._http import _clock
from hostedai_harpoon._http._plan import Planner
from hostedai_harpoon._http._steps import Flow, Reply, Send, SendOutcome, Sleep
from hostedai_harpoon._resilience import CircuitBreaker, CircuitBreakerConfig, RetryPolicy

T = TypeVar("T")
Answer = Callable[[httpx.Request], SendOutcome]

NO_JITTER = RetryPolicy(max_retries=2, initial_backoff=0.5, max_backoff=8.0, jitter=False)
HEALTHY = {"status": "ok", "version": "1"}


def build_request(
    method: str, url: httpx.URL, *, content: Any, params: Any, headers: Any, timeout: Any
) -> httpx.Request:
    return httpx.Request(
        method,
        url,
        content=content,
        params=params,
        headers=headers,
        extensions={"timeout": timeout.as_dict()},
    )


def planner(**changes: Any) -> Planner:
    settings: dict[str, Any] = {
        "build_request": build_request,
        "prefix": "https://api.test",
        "headers": {"user-agent": "test"},
        "secret": Secret("sk-plan-test"),
        "timeout": httpx.Timeout(5.0),
        "deadline": None,
        "retry": NO_JITTER,
        "breaker": None,
        **changes,
    }
    return Planner(**settings)


def reply(status: int, body: object = None, headers: dict[str, str] | None = None) -> Answer:
    """An attempt answered with ``status`` and ``body`` as JSON."""

    def answer(request: httpx.Request) -> Reply:
        content = b"" if body is None else json.dumps(body).encode()
        headers_ = {"content-type": "application/json", "x-request-id": "req_1", **(headers or {})}
        return Reply(
            httpx.Response(status, content=content, headers=headers_, request=request), content
        )

    return answer


def failing(error: type[httpx.TransportError]) -> Answer:
    """An attempt that ended with ``error`` instead of an answer."""

    def answer(request: httpx.Request) -> httpx.TransportError:
        return error("scripted", request=request)

    return answer


class FakeDriver:
    """Carries out a plan: each ``Send`` gets the next scripted outcome, each ``Sleep``
    moves a manual clock; it records the requests (as sent) and the waits."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.now = 1000.0
        self.sent: list[httpx.Request] = []
        self.authorization: list[str] = []
        self.waits: list[float] = []
        monkeypatch.setattr(_clock, "monotonic", lambda: self.now)

    def run(self, plan: Flow[T], answers: list[Answer]) -> T:
        script: Iterator[Answer] = iter(answers)
        outcome: SendOutcome = None
        try:
            while True:
                step = plan.send(outcome)
                if isinstance(step, Send):
                    self.sent.append(step.request)
                    self.authorization.append(step.request.headers["authorization"])
                    outcome = next(script)(step.request)
                else:
                    assert isinstance(step, Sleep)
                    self.waits.append(step.seconds)
                    self.now += step.seconds
                    outcome = None
        except StopIteration as done:
            assert next(script, None) is None, "the plan stopped before its script ran out"
            result: T = done.value
            return result


@pytest.fixture
def driver(monkeypatch: pytest.MonkeyPatch) -> FakeDriver:
    return FakeDriver(monkeypatch)


def test_an_answer_is_parsed_and_the_key_is_sent_as_is(driver: FakeDriver) -> None:
    health = driver.run(planner().plan(api.health()), [reply(200, HEALTHY)])
    assert (health.status, health.version, health.request_id) == ("ok", "1", "req_1")
    [request] = driver.sent
    assert (request.method, str(request.url)) == ("GET", "https://api.test/v1/health")
    assert driver.authorization == ["Bearer sk-plan-test"]
    # The request the transport saw is left as sent (the key stays out of errors instead).
    assert request.headers["authorization"] == "Bearer sk-plan-test"


def test_a_503_is_retried_after_the_backoff_then_answers(driver: FakeDriver) -> None:
    health = driver.run(
        planner().plan(api.health()), [reply(503, {"error": {}}), reply(200, HEALTHY)]
    )
    assert health.status == "ok"
    assert len(driver.sent) == 2
    assert driver.waits == [0.5]  # initial_backoff, no jitter


def test_retry_after_sets_the_wait(driver: FakeDriver) -> None:
    driver.run(
        planner().plan(api.health()),
        [reply(429, {"error": {}}, {"retry-after": "7"}), reply(200, HEALTHY)],
    )
    assert driver.waits == [7.0]


def test_a_retry_after_beyond_the_policys_limit_ends_the_call_at_once(driver: FakeDriver) -> None:
    with pytest.raises(harpoon.RateLimitError) as raised:
        driver.run(
            planner().plan(api.health()), [reply(429, {"error": {}}, {"retry-after": "3600"})]
        )
    assert raised.value.retry_after == 3600
    assert driver.waits == []


def test_the_last_attempts_error_is_raised_once_the_retries_are_spent(driver: FakeDriver) -> None:
    with pytest.raises(harpoon.InternalServerError):
        driver.run(planner().plan(api.health()), [reply(500, {"error": {}})] * 3)
    assert len(driver.sent) == 3  # the first attempt and max_retries=2
    assert driver.waits == [0.5, 1.0]


def test_an_inference_is_not_retried_after_an_ambiguous_failure(driver: FakeDriver) -> None:
    call = api.infer("alloc_1", "hi", None, None, None, None)
    with pytest.raises(harpoon.InternalServerError):
        driver.run(planner().plan(call), [reply(500, {"error": {}})])
    assert len(driver.sent) == 1


def test_an_inference_is_retried_when_the_request_never_left(driver: FakeDriver) -> None:
    call = api.infer("alloc_1", "hi", None, None, None, None)
    answer = {
        "id": "inf_1",
        "allocation_id": "alloc_1",
        "model": "gemma-3-270m",
        "text": "hello",
        "finish_reason": "stop",
        "usage": {"input_tokens": 1, "output_tokens": 1},
        "latency_ms": 5,
    }
    result = driver.run(planner().plan(call), [failing(httpx.ConnectError), reply(200, answer)])
    assert result.text == "hello"
    assert len(driver.sent) == 2


def test_a_release_of_an_allocation_already_gone_is_a_success(driver: FakeDriver) -> None:
    call = api.release_allocation("alloc_1")
    assert driver.run(planner().plan(call), [reply(404, {"error": {}})]) is None


def test_no_retry_is_made_that_would_end_past_the_deadline(driver: FakeDriver) -> None:
    with pytest.raises(harpoon.RateLimitError):
        driver.run(
            planner(deadline=5.0).plan(api.health()),
            [reply(429, {"error": {}}, {"retry-after": "10"})],
        )
    assert driver.waits == []


def test_each_attempt_is_given_only_what_is_left_of_the_deadline(driver: FakeDriver) -> None:
    driver.run(
        planner(deadline=4.0).plan(api.health()),
        [reply(503, {"error": {}}, {"retry-after": "3"}), reply(200, HEALTHY)],
    )
    first, second = (request.extensions["timeout"]["read"] for request in driver.sent)
    assert (first, second) == (4.0, pytest.approx(1.0))


def test_an_open_breaker_refuses_the_call_before_anything_is_sent(driver: FakeDriver) -> None:
    breaker = CircuitBreaker(
        CircuitBreakerConfig(minimum_calls=1, open_duration=60), clock=lambda: driver.now
    )
    breaker.record(breaker.acquire(), False)
    with pytest.raises(harpoon.CircuitOpenError):
        driver.run(planner(breaker=breaker).plan(api.health()), [])
    assert driver.sent == []


def test_a_retry_the_breaker_refuses_raises_the_last_attempts_error(driver: FakeDriver) -> None:
    breaker = CircuitBreaker(
        CircuitBreakerConfig(minimum_calls=1, open_duration=60), clock=lambda: driver.now
    )
    with pytest.raises(harpoon.InternalServerError) as raised:
        driver.run(planner(breaker=breaker).plan(api.health()), [reply(500, {"error": {}})])
    assert len(driver.sent) == 1
    assert any("not retried" in note for note in raised.value.__notes__)
