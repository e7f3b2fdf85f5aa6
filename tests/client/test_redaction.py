"""The API key never shows: not in a repr, not in an error, not in a log line at any level."""

from __future__ import annotations

import logging
import pickle
import traceback

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon._config import Secret, resolve_settings
from hostedai_harpoon.testing import Emulator, Fault, FaultPlan
from tests.client._support import (
    API_KEY,
    AnyClient,
    ClientFactory,
    call,
    mock_client,
    no_jitter,
    take,
)
from tests.conftest import EmulatorFactory

MODEL = "gemma-3-270m"
LOGGERS = ("", "hostedai_harpoon", "httpx", "httpcore")


def assert_hidden(text: str) -> None:
    assert API_KEY not in text
    assert API_KEY[8:24] not in text  # not even a part of it


def everything_about(error: BaseException) -> str:
    """Every way an error shows itself: str, repr, args, attributes and the traceback."""
    shown = [str(error), repr(error), repr(error.args), repr(vars(error))]
    shown.append("".join(traceback.format_exception(error)))
    cause = error.__cause__
    while cause is not None:
        shown += [str(cause), repr(cause), repr(vars(cause))]
        request = getattr(cause, "_request", None)
        if request is not None:
            shown += [repr(request), repr(request.headers)]
        cause = cause.__cause__
    return "\n".join(shown)


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    return caplog


def assert_logs_hidden(caplog: pytest.LogCaptureFixture) -> None:
    for record in caplog.records:
        assert_hidden(record.getMessage())
        assert_hidden(repr(record.args))
        assert_hidden(repr(vars(record)))
    assert_hidden(caplog.text)


# Reprs


async def test_no_repr_or_str_of_a_client_shows_the_key(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(emulator, pool_id="gpu-pool-1")
    for thing in (client, client.with_options(max_retries=0), client._settings):
        assert_hidden(repr(thing))
        assert_hidden(str(thing))
        assert_hidden(f"{thing}")
    assert repr(client._settings.api_key) == "Secret('***')"


def test_a_secret_hides_itself_in_every_format() -> None:
    secret = Secret(API_KEY)
    for shown in (repr(secret), str(secret), f"{secret}", f"{secret!r:>80}", "%s" % (secret,)):  # noqa: UP031
        assert_hidden(shown)
    assert secret.reveal() == API_KEY
    assert_hidden(repr(resolve_settings("https://api.example.test", API_KEY, None)))


def test_neither_a_client_nor_its_key_can_be_pickled() -> None:
    client = harpoon.HostedAI(base_url="https://api.example.test", api_key=API_KEY)
    with pytest.raises(TypeError) as caught:
        pickle.dumps(client)
    assert_hidden(str(caught.value))
    with pytest.raises(TypeError):
        pickle.dumps(Secret(API_KEY))
    client.close()


def test_a_key_with_control_characters_is_refused_without_echoing_it() -> None:
    with pytest.raises(harpoon.ConfigurationError) as caught:
        harpoon.HostedAI(base_url="https://api.example.test", api_key=API_KEY + "\r\nX-Evil: 1")
    assert_hidden(everything_about(caught.value))


# Errors


async def collect_errors(emu: Emulator, client: AnyClient) -> list[harpoon.HostedAIError]:
    """Provoke one error of every kind the client raises, over the emulator."""
    errors: list[harpoon.HostedAIError] = []

    async def provoke(method: str, *args: object, **kwargs: object) -> None:
        try:
            await call(client, method, *args, **kwargs)
        except harpoon.HostedAIError as error:
            errors.append(error)
        else:
            raise AssertionError(f"{method} did not fail")

    alloc = await call(client, "create_allocation", model=MODEL)
    await provoke("get_allocation", "alloc_000000000000000000000000")
    await provoke("get_pool", "nope")
    await provoke("create_allocation", model="unknown-model")
    await provoke("create_allocation", model=MODEL, gpus=8)
    await call(client, "release_allocation", alloc.id)
    await provoke("renew_allocation", alloc.id)
    for fault in (
        Fault("rate_limit", retry_after=999),
        Fault("error", status=500),
        Fault("error", status=503),
        Fault("drop"),
        Fault("latency", delay=5.0),
        Fault("malformed"),
        Fault("truncate"),
        Fault("invalid_schema"),
    ):
        emu.faults = FaultPlan(rules=[fault])
        await provoke("list_pools")
    emu.faults = None
    alloc = await call(client, "create_allocation", model=MODEL)
    emu.faults = FaultPlan(rules=[Fault("truncate", path="/v1/inference")])
    try:
        await take(await call(client, "stream", allocation_id=alloc.id, prompt="hi"))
    except harpoon.HostedAIError as error:
        errors.append(error)
    emu.faults = FaultPlan(rules=[Fault("error", status=500)])
    for _ in range(12):
        await provoke("health")
    return errors


async def test_no_error_shows_the_key(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = make_emulator(capacity_retry_after=1)
    client = make_client(emu, retry=no_jitter(max_retries=1), timeout=0.02)
    errors = await collect_errors(emu, client)
    kinds = {type(error) for error in errors}
    assert kinds >= {
        harpoon.NotFoundError,
        harpoon.UnprocessableEntityError,
        harpoon.CapacityError,
        harpoon.GoneError,
        harpoon.RateLimitError,
        harpoon.InternalServerError,
        harpoon.APIConnectionError,
        harpoon.APITimeoutError,
        harpoon.ResponseValidationError,
        harpoon.CircuitOpenError,
    }
    for error in errors:
        assert_hidden(everything_about(error))


def test_an_authentication_error_does_not_echo_the_key() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            401,
            json={"error": {"type": "authentication_error", "code": "invalid_api_key"}},
            headers={"x-request-id": "req_1"},
        )

    with pytest.raises(harpoon.AuthenticationError) as caught:
        mock_client(handler).list_pools()
    assert_hidden(everything_about(caught.value))


# Logs


async def test_debug_logs_in_process_never_show_the_key(
    make_emulator: EmulatorFactory,
    make_client: ClientFactory,
    debug_logs: pytest.LogCaptureFixture,
) -> None:
    emu = make_emulator(capacity_retry_after=1)
    client = make_client(emu, retry=no_jitter(max_retries=1), timeout=0.02)
    await collect_errors(emu, client)
    emu.faults = None
    client = make_client(emu)  # the first one's breaker is open by now
    alloc = await call(client, "create_allocation", model=MODEL)
    await call(client, "infer", allocation_id=alloc.id, prompt="hello")
    await take(await call(client, "stream", allocation_id=alloc.id, prompt="hello"))
    loggers = {record.name for record in debug_logs.records}
    assert {"hostedai_harpoon", "httpx"} <= loggers
    assert any("retrying" in record.getMessage() for record in debug_logs.records)
    assert_logs_hidden(debug_logs)


def test_debug_logs_over_tcp_never_show_the_key(
    make_emulator: EmulatorFactory, debug_logs: pytest.LogCaptureFixture
) -> None:
    emu = make_emulator(faults=FaultPlan(rules=[Fault("error", status=503, times=1)]))
    with (
        emu.serve() as base_url,
        harpoon.HostedAI(base_url=base_url, api_key=API_KEY, retry=no_jitter()) as client,
    ):
        alloc = client.create_allocation(model=MODEL)
        client.infer(allocation_id=alloc.id, prompt="hello")
        with pytest.raises(harpoon.NotFoundError):
            client.get_allocation("alloc_000000000000000000000000")
        client.release_allocation(alloc.id)
    loggers = {record.name.split(".")[0] for record in debug_logs.records}
    assert {"hostedai_harpoon", "httpx", "httpcore"} <= loggers
    assert_logs_hidden(debug_logs)


async def test_async_debug_logs_over_tcp_never_show_the_key(
    make_emulator: EmulatorFactory, debug_logs: pytest.LogCaptureFixture
) -> None:
    emu = make_emulator()
    with emu.serve() as base_url:
        async with harpoon.AsyncHostedAI(base_url=base_url, api_key=API_KEY) as client:
            alloc = await client.create_allocation(model=MODEL)
            await take(await client.stream(allocation_id=alloc.id, prompt="hello"))
            await client.release_allocation(alloc.id)
    assert "httpcore" in {record.name.split(".")[0] for record in debug_logs.records}
    assert_logs_hidden(debug_logs)


def test_the_httpx_error_behind_a_connection_error_no_longer_holds_the_key(
    make_emulator: EmulatorFactory,
) -> None:
    emu = make_emulator(faults=FaultPlan(rules=[Fault("drop")]))
    client = harpoon.HostedAI(
        "http://127.0.0.1:8080", API_KEY, http_client=emu.http_client(), max_retries=0
    )
    with pytest.raises(harpoon.APIConnectionError) as caught:
        client.health()
    cause = caught.value.__cause__
    assert isinstance(cause, httpx.TransportError)
    assert_hidden(str(dict(cause.request.headers)))
