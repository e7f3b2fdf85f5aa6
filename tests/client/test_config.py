"""Configuration: arguments, then the environment; insecure URLs; copies; lifecycle; headers."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator
from tests.client._support import (
    API_KEY,
    BASE_URL,
    ClientFactory,
    Flavor,
    call,
    mock_async_client,
    mock_client,
)

ENV_VARS = ("HOSTED_AI_BASE_URL", "HOSTED_AI_API_KEY", "HOSTED_AI_POOL_ID")


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


def ok(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"status": "ok", "version": "1"})


# Where settings come from


def test_settings_come_from_the_environment_when_not_passed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("HOSTED_AI_BASE_URL", "https://api.example.test/")
    monkeypatch.setenv("HOSTED_AI_API_KEY", API_KEY)
    monkeypatch.setenv("HOSTED_AI_POOL_ID", "gpu-pool-7")
    client = harpoon.HostedAI()
    assert client.base_url == "https://api.example.test"
    assert client.pool_id == "gpu-pool-7"
    client.close()


def test_arguments_win_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOSTED_AI_BASE_URL", "https://env.example.test")
    monkeypatch.setenv("HOSTED_AI_API_KEY", "env-key")
    monkeypatch.setenv("HOSTED_AI_POOL_ID", "env-pool")
    seen: list[httpx.Request] = []
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        keys.append(request.headers["authorization"])
        return ok(request)

    client = mock_client(handler, base_url="https://arg.example.test", pool_id="arg-pool")
    client.health()
    assert client.base_url == "https://arg.example.test"
    assert client.pool_id == "arg-pool"
    assert seen[0].url.host == "arg.example.test"
    assert keys == [f"Bearer {API_KEY}"]


def test_a_missing_base_url_names_its_environment_variable() -> None:
    with pytest.raises(harpoon.ConfigurationError, match="HOSTED_AI_BASE_URL"):
        harpoon.HostedAI(api_key=API_KEY)


@pytest.mark.parametrize("value", [None, "", "   "])
def test_a_missing_or_blank_api_key_names_its_environment_variable(
    monkeypatch: pytest.MonkeyPatch, value: str | None
) -> None:
    if value is not None:
        monkeypatch.setenv("HOSTED_AI_API_KEY", value)
    with pytest.raises(harpoon.ConfigurationError, match="HOSTED_AI_API_KEY"):
        harpoon.AsyncHostedAI(base_url=BASE_URL)


def test_the_pool_is_optional() -> None:
    client = harpoon.HostedAI(base_url=BASE_URL, api_key=API_KEY)
    assert client.pool_id is None
    client.close()


@pytest.mark.parametrize(
    "url", ["ftp://api.example.test", "api.example.test", "https://", "not a url at all"]
)
def test_a_base_url_that_is_not_absolute_http_is_refused(url: str) -> None:
    with pytest.raises(harpoon.ConfigurationError):
        harpoon.HostedAI(base_url=url, api_key=API_KEY)


# Plain http


def test_plain_http_to_a_remote_host_is_refused() -> None:
    with pytest.raises(harpoon.ConfigurationError, match="allow_insecure_http"):
        harpoon.HostedAI(base_url="http://api.example.test", api_key=API_KEY)


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1:8080", "http://localhost", "http://[::1]:9000", "http://127.9.9.9"]
)
def test_plain_http_to_loopback_is_allowed(url: str) -> None:
    harpoon.HostedAI(base_url=url, api_key=API_KEY).close()


def test_plain_http_to_a_remote_host_is_allowed_when_asked_for() -> None:
    client = harpoon.HostedAI(
        base_url="http://api.example.test", api_key=API_KEY, allow_insecure_http=True
    )
    assert client.base_url == "http://api.example.test"
    client.close()


@pytest.mark.parametrize("flag", ["false", "no", "0", "", 0, 1, None, "True"])
@pytest.mark.parametrize("client_class", [harpoon.HostedAI, harpoon.AsyncHostedAI])
def test_allow_insecure_http_takes_only_a_bool(flag: object, client_class: type) -> None:
    with pytest.raises(harpoon.ConfigurationError, match="allow_insecure_http must be True or"):
        client_class(base_url="http://api.example.test", api_key=API_KEY, allow_insecure_http=flag)


def test_credentials_in_the_base_url_are_refused() -> None:
    with pytest.raises(harpoon.ConfigurationError) as caught:
        harpoon.HostedAI(base_url=f"https://user:{API_KEY}@api.example.test", api_key=API_KEY)
    assert API_KEY not in str(caught.value)


# The injected http client and the lifecycle


def test_an_injected_http_client_is_used_and_not_closed() -> None:
    http = httpx.Client(transport=httpx.MockTransport(ok))
    with harpoon.HostedAI(base_url=BASE_URL, api_key=API_KEY, http_client=http) as client:
        assert client.health().status == "ok"
    client.close()
    assert not http.is_closed
    http.close()


async def test_an_injected_async_http_client_is_used_and_not_closed() -> None:
    http = httpx.AsyncClient(transport=httpx.MockTransport(ok))
    async with harpoon.AsyncHostedAI(base_url=BASE_URL, api_key=API_KEY, http_client=http) as c:
        assert (await c.health()).status == "ok"
    assert not http.is_closed
    await http.aclose()


def test_the_client_closes_its_own_connection_pool_on_exit() -> None:
    with harpoon.HostedAI(base_url=BASE_URL, api_key=API_KEY) as client:
        http = client._http
        assert not http.is_closed
    assert http.is_closed


async def test_the_async_client_closes_its_own_connection_pool_on_exit() -> None:
    async with harpoon.AsyncHostedAI(base_url=BASE_URL, api_key=API_KEY) as client:
        http = client._http
    assert http.is_closed


async def test_an_http_client_of_the_wrong_kind_is_refused() -> None:
    with httpx.Client() as sync_http, pytest.raises(harpoon.ConfigurationError):
        harpoon.AsyncHostedAI(base_url=BASE_URL, api_key=API_KEY, http_client=sync_http)  # type: ignore[arg-type]
    async with httpx.AsyncClient() as async_http:
        with pytest.raises(harpoon.ConfigurationError):
            harpoon.HostedAI(base_url=BASE_URL, api_key=API_KEY, http_client=async_http)  # type: ignore[arg-type]


# with_options


def test_with_options_changes_settings_on_a_copy_only() -> None:
    client = mock_client(ok, pool_id="gpu-pool-1", max_retries=2)
    copy = client.with_options(pool_id="gpu-pool-2", max_retries=0, timeout=3.0, deadline=9.0)
    assert (copy.pool_id, copy.max_retries, copy.timeout, copy.deadline) == (
        "gpu-pool-2",
        0,
        httpx.Timeout(3.0),
        9.0,
    )
    assert (client.pool_id, client.max_retries, client.deadline) == ("gpu-pool-1", 2, None)
    assert type(copy) is harpoon.HostedAI


def test_with_options_shares_the_connection_pool_and_the_breaker() -> None:
    with harpoon.HostedAI(base_url=BASE_URL, api_key=API_KEY) as client:
        copy = client.with_options(max_retries=5)
        assert copy._http is client._http
        assert copy.circuit_breaker is client.circuit_breaker
        copy.close()
        assert not client._http.is_closed


async def test_with_options_on_the_async_client_shares_the_pool_too() -> None:
    async with harpoon.AsyncHostedAI(base_url=BASE_URL, api_key=API_KEY) as client:
        copy = client.with_options(timeout=1.0)
        assert isinstance(copy, harpoon.AsyncHostedAI)
        assert copy._http is client._http
        await copy.close()
        assert not client._http.is_closed


def test_a_with_options_copy_sends_its_own_pool() -> None:
    seen: list[bytes] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.read())
        return httpx.Response(500)

    client = mock_client(handler, pool_id="gpu-pool-1", max_retries=0)
    with pytest.raises(harpoon.InternalServerError):
        client.with_options(pool_id="gpu-pool-2").create_allocation(model="gemma-3-270m")
    assert b'"pool_id":"gpu-pool-2"' in seen[0]


# Limits that are validated up front


@pytest.mark.parametrize("deadline", [0, -1.0, True])
def test_a_deadline_must_be_positive(deadline: float) -> None:
    with pytest.raises(harpoon.ConfigurationError, match="deadline"):
        harpoon.HostedAI(base_url=BASE_URL, api_key=API_KEY, deadline=deadline)


@pytest.mark.parametrize("bad_id", ["", "..", "."])
def test_an_id_that_would_change_the_path_is_refused_before_sending(bad_id: str) -> None:
    client = mock_client(ok)
    with pytest.raises(harpoon.ConfigurationError):
        client.get_allocation(bad_id)


def test_an_id_with_url_syntax_in_it_stays_one_path_segment() -> None:
    sent: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        sent.append(request)
        return httpx.Response(204)

    client = harpoon.HostedAI(
        BASE_URL, API_KEY, http_client=httpx.Client(transport=httpx.MockTransport(handler))
    )
    client.release_allocation("a/b?c#d e")
    assert sent[0].url.raw_path == b"/v1/allocate/a%2Fb%3Fc%23d%20e"


# What goes on the wire


async def test_every_request_names_the_package_and_version_and_carries_the_key(
    emulator: Emulator, make_client: ClientFactory, flavor: Flavor
) -> None:
    client = make_client(emulator)
    await call(client, "health")
    await call(client, "list_pools")
    for exchange in emulator.exchanges:
        agent = exchange.request_headers["user-agent"]
        assert agent.startswith(f"hostedai-harpoon/{harpoon.__version__} ")
    # The emulator masks the key in its log: check the header arrives on a mock instead.
    keys: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        keys.append(request.headers["authorization"])
        return ok(request)

    mock = mock_client(handler) if flavor == "sync" else mock_async_client(handler)
    await call(mock, "health")
    assert keys == [f"Bearer {API_KEY}"]


def test_each_attempt_carries_the_configured_timeout() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return ok(request)

    client = mock_client(handler, timeout=httpx.Timeout(7.0, connect=2.0))
    client.health()
    assert seen[0].extensions["timeout"] == {"connect": 2.0, "read": 7.0, "write": 7.0, "pool": 7.0}


async def test_requests_merge_the_http_clients_own_settings_as_httpx_does(flavor: Flavor) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"status": "ok", "version": "1"})

    options: Any = {
        "transport": httpx.MockTransport(handler),
        "headers": {"X-Tenant": "t-1", "Accept": "text/plain"},
    }
    if flavor == "sync":
        client: Any = harpoon.HostedAI(BASE_URL, API_KEY, http_client=httpx.Client(**options))
    else:
        client = harpoon.AsyncHostedAI(BASE_URL, API_KEY, http_client=httpx.AsyncClient(**options))
    http = client._http
    await call(client, "health")
    http.headers["X-Later"] = "yes"  # a change made afterwards is seen by the next request
    await call(client, "health")
    http.cookies.set("session", "c-1")
    http.params = {"trace": "1"}
    await call(client, "health")
    first, later, with_cookies = seen
    names = [name.lower() for name, _ in first.headers.multi_items()]
    assert len(names) == len(set(names))  # one of each: ours replace the client's
    assert first.headers["x-tenant"] == "t-1"
    assert first.headers["accept"] == "application/json"
    assert first.headers["authorization"] == f"Bearer {API_KEY}"
    assert "x-later" not in first.headers
    assert later.headers["x-later"] == "yes"
    assert with_cookies.headers["cookie"] == "session=c-1"
    assert with_cookies.url.params["trace"] == "1"
