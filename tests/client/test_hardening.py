"""Regressions from the attack on the clients (hardening issue, items 6, 7, 9, 10, 12, 13, 15).

Every guarantee here holds on both control-plane dialects (``tests/dialects.py``): a test
that takes ``dialect`` (or an emulator) runs on ``v1`` and on hosted·ai's platform
(``gpuaas``), where the clients it builds are of that dialect. What the platform does not
have (inference by allocation id, ``/v1`` base URLs) is marked ``v1_only``, and its
counterpart on the platform (the same guarantee, through a lease) follows it.
"""

from __future__ import annotations

import contextlib
import json
import pickle
import traceback
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator
from tests.client._support import (
    API_KEY,
    BASE_URL,
    AnyClient,
    ClientFactory,
    call,
    mock_async_client,
    mock_client,
)
from tests.dialects import PATHS, TEAM, parametrize_dialects

MODEL = "gemma-3-270m"
# A plain call each dialect answers with one request (the platform has no /v1/health).
PLAIN_CALL = {"v1": "health", "gpuaas": "list_pools"}


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_dialects(metafunc)


@pytest.fixture
def on_dialect(dialect: str, make_emulator: object) -> str:
    """The clients this test builds speak ``dialect`` (``make_emulator`` sets the
    environment on ``gpuaas``), with or without an emulator behind them."""
    return dialect


def dialect_options(dialect: str) -> dict[str, Any]:
    """What a client made without the environment needs to speak ``dialect``."""
    return {} if dialect == "v1" else {"dialect": "gpuaas", "team_id": TEAM}


@contextlib.asynccontextmanager
async def lease_of(client: AnyClient, **options: Any) -> AsyncIterator[Any]:
    """A lease of ``MODEL`` on either client, entered the way that client enters it."""
    if isinstance(client, harpoon.AsyncHostedAI):
        async with client.allocate(model=MODEL, **options) as lease:
            yield lease
    else:
        with client.allocate(model=MODEL, **options) as lease:
            yield lease


# 6. A key that cannot be sent ------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["sk-“pasted”", "sk-naïve", "sk with space", "sk-tab\tkey", "sk-\x7f"]
)
@pytest.mark.parametrize("client_class", [harpoon.HostedAI, harpoon.AsyncHostedAI])
def test_a_key_that_cannot_be_sent_is_refused_without_echoing_it(
    on_dialect: str, key: str, client_class: type[harpoon.HostedAI | harpoon.AsyncHostedAI]
) -> None:
    with pytest.raises(harpoon.ConfigurationError) as raised:
        client_class(BASE_URL, key)
    shown = repr(raised.value) + str(raised.value) + repr(pickle.loads(pickle.dumps(raised.value)))
    assert key not in shown
    assert "printable ASCII" in str(raised.value)


def test_default_headers_that_cannot_be_sent_are_refused(on_dialect: str) -> None:
    with pytest.raises(harpoon.ConfigurationError, match="default_headers"):
        harpoon.HostedAI(BASE_URL, API_KEY, default_headers={"x-team": "café"})


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"dialect": "gpuass"}, "dialect"),
        ({"dialect": 2}, "dialect"),
        ({"team_id": 7}, "team_id"),
        ({"team_id": " "}, "team_id"),
        ({"auth_header": "x-key"}, "auth_header"),
        ({"ledger_dir": 3}, "ledger_dir"),
        ({"subscribe_options": {1: "x"}}, "subscribe_options"),
        ({"subscribe_options": {"image_uuid": object()}}, "subscribe_options"),
        ({"subscribe_options": {"vgpus": float("nan")}}, "subscribe_options"),
    ],
)
@pytest.mark.parametrize("client_class", [harpoon.HostedAI, harpoon.AsyncHostedAI])
def test_bad_dialect_settings_are_refused_by_name_without_the_key(
    client_class: type[harpoon.HostedAI | harpoon.AsyncHostedAI],
    options: dict[str, Any],
    named: str,
) -> None:
    arguments = {"dialect": "gpuaas", "team_id": TEAM, **options}
    with pytest.raises(harpoon.ConfigurationError, match=rf"^{named} ") as raised:
        client_class(BASE_URL, API_KEY, **arguments)
    assert API_KEY not in _locals_shown(raised.tb) + repr(raised.value)


# 7. The key in no frame that can raise and in no chained error ----------------------------


PACKAGE_DIR = str(Path(harpoon.__file__).parent)


def _locals_shown(tb: TracebackType | None) -> str:
    """Every local of every frame of the package in the traceback, as a locals-capturing
    reporter (Sentry, rich) shows it."""
    shown: list[str] = []
    for frame, _ in traceback.walk_tb(tb):
        if frame.f_code.co_filename.startswith(PACKAGE_DIR):
            shown.extend(f"{name}={value!r}" for name, value in frame.f_locals.items())
    return "\n".join(shown)


def _chain(error: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [error]
    while todo:
        item = todo.pop()
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        todo += [item.__cause__, item.__context__]
    return seen


def _everything_shown(error: BaseException) -> str:
    """What a reporter can show of an error: its chain, each one's repr, the package's
    frame locals and, for httpx errors, the request's headers."""
    parts = []
    for item in _chain(error):
        parts.append(repr(item))
        parts.append(_locals_shown(item.__traceback__))
        request = getattr(item, "_request", None)
        if isinstance(request, httpx.Request):
            parts.append(repr(dict(request.headers)))
    return "\n".join(parts)


BUILT_CALL: dict[str, tuple[str, tuple[object, ...]]] = {
    "v1": ("infer", ("alloc-1", "hello")),
    "gpuaas": ("create_allocation", (MODEL, 1, None, "1")),
}


class _ExplodingClient(httpx.Client):
    def build_request(self, *args: Any, **kwargs: Any) -> httpx.Request:
        raise RuntimeError("the request could not be built")


class _ExplodingAsyncClient(httpx.AsyncClient):
    def build_request(self, *args: Any, **kwargs: Any) -> httpx.Request:
        raise RuntimeError("the request could not be built")


@pytest.mark.parametrize("flavor", ["sync", "async"])
async def test_a_request_that_cannot_be_built_leaves_the_key_in_no_frame(
    on_dialect: str, flavor: str
) -> None:
    client: Any = (
        harpoon.HostedAI(BASE_URL, API_KEY, http_client=_ExplodingClient())
        if flavor == "sync"
        else harpoon.AsyncHostedAI(BASE_URL, API_KEY, http_client=_ExplodingAsyncClient())
    )
    # The platform's subscribe carries the team, and the key in its own header.
    method, arguments = BUILT_CALL[on_dialect]
    with pytest.raises(RuntimeError) as raised:
        await call(client, method, *arguments)
    shown = _locals_shown(raised.value.__traceback__)
    names = [frame.f_code.co_name for frame, _ in traceback.walk_tb(raised.tb)]
    assert "build_request" in names  # it failed below the SDK's own request building
    assert API_KEY not in shown


@pytest.mark.parametrize("flavor", ["sync", "async"])
async def test_an_undecodable_body_chains_no_error_holding_the_key(
    on_dialect: str, flavor: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"content-encoding": "gzip"},
            stream=httpx.ByteStream(b"this is not gzip at all"),
        )

    client: Any = mock_client(handler) if flavor == "sync" else mock_async_client(handler)
    with pytest.raises(harpoon.ResponseValidationError) as raised:
        await call(client, PLAIN_CALL[on_dialect])
    assert API_KEY not in _everything_shown(raised.value)


@pytest.mark.parametrize("flavor", ["sync", "async"])
async def test_a_failed_connection_chains_no_error_holding_the_key(
    on_dialect: str, flavor: str
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client: Any = (
        mock_client(handler, max_retries=0)
        if flavor == "sync"
        else mock_async_client(handler, max_retries=0)
    )
    with pytest.raises(harpoon.APIConnectionError) as raised:
        await call(client, PLAIN_CALL[on_dialect])
    assert API_KEY not in _everything_shown(raised.value)


@pytest.mark.v1_only("client.stream(allocation_id) is v1's; the platform's streams: below")
def test_a_streamed_response_shows_the_key_in_no_repr(emulator: Emulator) -> None:
    client = harpoon.HostedAI(BASE_URL, API_KEY, http_client=emulator.http_client())
    allocation = client.create_allocation("gemma-3-270m")
    with client.stream(allocation.id, "hello") as stream:
        request = stream.response.request
        for thing in (stream, stream.response, request, request.headers):
            assert API_KEY not in repr(thing)
        # The request is left as it was sent: it is the one the caller's transport saw.
        assert request.headers["authorization"] == f"Bearer {API_KEY}"
        assert list(stream)


def test_a_leases_stream_shows_the_key_in_no_repr_and_sends_it_only_to_the_platform(
    emulator: Emulator, dialect: str
) -> None:
    client = harpoon.HostedAI(BASE_URL, API_KEY, http_client=emulator.http_client())
    with client.allocate(model=MODEL) as lease, lease.stream("hello") as stream:
        request = stream.response.request
        for thing in (lease, stream, stream.response, request, request.headers):
            assert API_KEY not in repr(thing)
        assert list(stream)
    header = "authorization" if dialect == "v1" else "x-api-key"
    for exchange in emulator.exchanges:
        sent = exchange.request_headers
        if exchange.path == PATHS[dialect].inference[1] and dialect == "gpuaas":
            assert API_KEY not in json.dumps(dict(sent))  # the pod is not the platform
        else:
            assert header in sent
    assert emulator.requests_to(*PATHS[dialect].inference)


@pytest.mark.parametrize("client_class", [harpoon.HostedAI, harpoon.AsyncHostedAI])
@pytest.mark.parametrize("header", ["X-Api-Key", "X-Forwarded-Key"])
def test_a_key_in_default_headers_is_in_no_frame_of_a_failed_construction(
    on_dialect: str, client_class: type, header: str
) -> None:
    with pytest.raises(harpoon.ConfigurationError) as raised:
        client_class(BASE_URL, API_KEY, default_headers={header: API_KEY}, max_response_bytes=0)
    frames = [frame for frame, _ in traceback.walk_tb(raised.value.__traceback__)]
    assert len(frames) >= 2
    assert all(API_KEY not in repr(value) for f in frames for value in f.f_locals.values())


def test_a_bad_base_url_leaves_the_key_in_no_frame_of_the_settings(on_dialect: str) -> None:
    with pytest.raises(harpoon.ConfigurationError) as raised:
        harpoon.HostedAI("ftp://nowhere", API_KEY)
    tb = raised.value.__traceback__
    settings_frames = [
        frame for frame, _ in traceback.walk_tb(tb) if frame.f_code.co_name == "resolve_settings"
    ]
    assert settings_frames
    assert all(API_KEY not in repr(value) for f in settings_frames for value in f.f_locals.values())


# 9. Every argument checked before sending, named as spelled ------------------------------

CREATE_CASES: list[tuple[str, dict[str, object]]] = [
    ("gpus", {"gpus": -1}),
    ("gpus", {"gpus": 0}),
    ("gpus", {"gpus": True}),
    ("gpus", {"gpus": 1.5}),
    ("gpus", {"gpus": "1"}),
    ("model", {"model": ""}),
    ("model", {"model": 3}),
    ("model", {"model": None}),
    ("gpu_type", {"gpu_type": ""}),
    ("gpu_type", {"gpu_type": 7}),
    ("pool_id", {"pool_id": ""}),
    ("pool_id", {"pool_id": "\ud800"}),
    ("ttl", {"ttl": float("nan")}),
    ("ttl", {"ttl": float("inf")}),
    ("ttl", {"ttl": 0}),
    ("ttl", {"ttl": 86_401}),
    ("idempotency_key", {"idempotency_key": "line\nbreak"}),
    ("idempotency_key", {"idempotency_key": 12}),
]


@pytest.mark.parametrize(("name", "change"), CREATE_CASES)
async def test_bad_create_arguments_are_refused_by_name_before_sending(
    make_client: ClientFactory, emulator: Emulator, name: str, change: dict[str, object]
) -> None:
    client = make_client(emulator)
    arguments: dict[str, object] = {"model": "gemma-3-270m", **change}
    with pytest.raises(harpoon.ConfigurationError, match=rf"^{name} "):
        await call(client, "create_allocation", **arguments)
    with pytest.raises(harpoon.ConfigurationError, match=rf"^{name} "):
        client.allocate(**arguments)  # type: ignore[arg-type]
    assert emulator.exchanges == []


INFER_CASES: list[tuple[str, dict[str, object]]] = [
    ("prompt", {"prompt": ""}),
    ("prompt", {"prompt": None}),
    ("prompt", {"prompt": b"bytes"}),
    ("prompt", {"prompt": 42}),
    ("prompt", {"prompt": "lone \udc00 surrogate"}),
    ("model", {"model": ""}),
    ("model", {"model": 1}),
    ("max_tokens", {"max_tokens": 0}),
    ("max_tokens", {"max_tokens": -5}),
    ("max_tokens", {"max_tokens": True}),
    ("max_tokens", {"max_tokens": 2.0}),
    ("max_tokens", {"max_tokens": 10**9}),
    ("temperature", {"temperature": float("nan")}),
    ("temperature", {"temperature": float("inf")}),
    ("temperature", {"temperature": -0.1}),
    ("temperature", {"temperature": 2.5}),
    ("temperature", {"temperature": "0.7"}),
    ("temperature", {"temperature": False}),
    ("stop", {"stop": ""}),
    ("stop", {"stop": []}),
    ("stop", {"stop": ["a", "b", "c", "d", "e"]}),
    ("stop", {"stop": [1]}),
    ("stop", {"stop": b"\n"}),
    ("stop", {"stop": {"\n"}}),
]
ALLOCATION_ID_CASES: list[tuple[str, dict[str, object]]] = [
    ("allocation_id", {"allocation_id": ""}),
    ("allocation_id", {"allocation_id": ".."}),
    ("allocation_id", {"allocation_id": None}),
    ("allocation_id", {"allocation_id": "alloc-\ud800"}),
]


@pytest.mark.v1_only("inference by allocation id is v1's; the platform's: through a lease")
@pytest.mark.parametrize("method", ["infer", "stream"])
@pytest.mark.parametrize(("name", "change"), INFER_CASES + ALLOCATION_ID_CASES)
async def test_bad_inference_arguments_are_refused_by_name_before_sending(
    make_client: ClientFactory,
    emulator: Emulator,
    method: str,
    name: str,
    change: dict[str, object],
) -> None:
    client = make_client(emulator)
    arguments: dict[str, object] = {"allocation_id": "alloc-1", "prompt": "hello", **change}
    with pytest.raises(harpoon.ConfigurationError, match=rf"^{name} "):
        await call(client, method, **arguments)
    assert emulator.exchanges == []


MESSAGES_CASES: list[tuple[str, dict[str, object]]] = [
    ("messages", {"prompt": None, "messages": "hello"}),
    ("messages", {"prompt": None, "messages": []}),
    (r"messages\[0\]", {"prompt": None, "messages": [("user", "hi")]}),
    (r"messages\[0\]\['content'\]", {"prompt": None, "messages": [{"role": "user", "content": 1}]}),
    ("pass prompt or messages", {"messages": [{"role": "user", "content": "hi"}]}),
]


@pytest.mark.parametrize("method", ["infer", "stream"])
@pytest.mark.parametrize(("name", "change"), INFER_CASES + MESSAGES_CASES)
async def test_bad_inference_arguments_to_a_lease_are_refused_by_name_before_sending(
    make_client: ClientFactory,
    emulator: Emulator,
    dialect: str,
    method: str,
    name: str,
    change: dict[str, object],
) -> None:
    # On the platform the lease's model is served by its pod (OpenAI-compatible); the
    # messages= form exists only there (v1 leases refuse it as a UsageError).
    if dialect == "v1" and "messages" in change:
        pytest.skip("messages= is for OpenAI leases")
    client = make_client(emulator)
    async with lease_of(client) as lease:
        sent = len(emulator.exchanges)
        arguments: dict[str, object] = {"prompt": "hello", **change}
        with pytest.raises(harpoon.ConfigurationError, match=rf"^{name}"):
            await call(lease, method, **arguments)
        assert len(emulator.exchanges) == sent
    assert emulator.live_allocations() == []


@pytest.mark.parametrize("method", ["infer", "stream"])
async def test_inference_by_allocation_id_on_the_platform_says_to_use_a_lease(
    make_client: ClientFactory, emulator: Emulator, dialect: str, method: str
) -> None:
    if dialect == "v1":
        pytest.skip("v1 infers by allocation id")
    client = make_client(emulator)
    with pytest.raises(harpoon.UsageError, match="allocate"):
        await call(client, method, "1001", "hello")
    assert emulator.exchanges == []


@pytest.mark.parametrize("method", ["get_allocation", "renew_allocation", "release_allocation"])
async def test_an_unsendable_allocation_id_is_a_configuration_error(
    make_client: ClientFactory, emulator: Emulator, method: str
) -> None:
    client = make_client(emulator)
    with pytest.raises(harpoon.ConfigurationError, match=r"^allocation_id "):
        await call(client, method, "alloc-\udfff")
    assert emulator.exchanges == []


@pytest.mark.parametrize("pool_id", ["", "pool-\udfff", 7])
async def test_an_unsendable_pool_id_is_a_configuration_error(
    make_client: ClientFactory, emulator: Emulator, pool_id: object
) -> None:
    client = make_client(emulator)
    with pytest.raises(harpoon.ConfigurationError, match=r"^pool_id "):
        await call(client, "get_pool", pool_id)
    with pytest.raises(harpoon.ConfigurationError, match=r"^pool_id "):
        await call(client, "list_allocations", pool_id)
    assert emulator.exchanges == []


async def test_good_edge_values_still_go_through(
    make_client: ClientFactory, emulator: Emulator, dialect: str
) -> None:
    client = make_client(emulator)
    allocation = await call(client, "create_allocation", "gemma-3-270m", gpus=2, ttl=86_400)
    assert allocation.gpu_count == 2
    options: dict[str, Any] = {"max_tokens": 1, "temperature": 0, "stop": ("a", "b", "c", "d")}
    if dialect == "v1":
        result = await call(client, "infer", allocation.id, "ü", **options)
        assert result.allocation_id == allocation.id
    else:  # the platform's model is reached through a lease, on a pool of its own
        await call(client, "release_allocation", allocation.id)
        async with lease_of(client, gpus=2, ttl=86_400) as lease:
            result = await call(lease, "infer", "ü", **options)
            assert result.allocation_id == lease.id
    sent = json.loads(emulator.requests_to(*PATHS[dialect].inference)[0].request_body)
    assert sent["stop"] == ["a", "b", "c", "d"]


# 10. Numbers that are not JSON --------------------------------------------------------------

# One answer of each dialect's plain call with ``{constant}`` where a number goes.
NUMBER_BODIES = {
    "v1": (
        "infer",
        ("a", "hello"),
        '{"id":"inf_1","allocation_id":"a","model":"m","text":"t","finish_reason":"stop",'
        '"usage":{"input_tokens":1,"output_tokens":1},"latency_ms":{constant}}',
    ),
    "gpuaas": (
        "list_pools",
        (),
        '[{"id":1,"pool_name":"p","gpu_model_type":"H100","available_vgpus":{constant}}]',
    ),
}


@pytest.mark.parametrize("constant", ["Infinity", "-Infinity", "NaN", "1e999"])
async def test_a_json_answer_with_a_non_json_number_is_a_validation_error(
    on_dialect: str, flavor: str, constant: str
) -> None:
    method, arguments, template = NUMBER_BODIES[on_dialect]
    body = template.replace("{constant}", constant)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body.encode(), headers={"x-request-id": "r"})

    client: Any = mock_client(handler) if flavor == "sync" else mock_async_client(handler)
    with pytest.raises(harpoon.ResponseValidationError, match=constant):
        await call(client, method, *arguments)


# 12. Statuses compare with their strings ---------------------------------------------------


def test_an_allocation_status_equals_its_wire_string(emulator: Emulator) -> None:
    client = harpoon.HostedAI(BASE_URL, API_KEY, http_client=emulator.http_client())
    allocation = client.create_allocation("gemma-3-270m")
    assert allocation.status in ("pending", "ready")
    ready: object = harpoon.AllocationStatus.READY
    assert ready == "ready"
    from hostedai_harpoon import testing

    assert testing.AllocationStatus is harpoon.AllocationStatus


# 13. The wrong flavour of client or stream names the fix ----------------------------------


async def test_the_sync_client_under_async_with_names_the_fix(on_dialect: str) -> None:
    with pytest.raises(harpoon.UsageError, match="AsyncHostedAI"):
        async with harpoon.HostedAI(BASE_URL, API_KEY):
            pass


def test_the_async_client_under_with_names_the_fix(on_dialect: str) -> None:
    with (
        pytest.raises(harpoon.UsageError, match="async with AsyncHostedAI"),
        harpoon.AsyncHostedAI(BASE_URL, API_KEY),
    ):
        pass


@pytest.mark.v1_only("client.stream(allocation_id) is v1's; the platform's streams: below")
async def test_streams_of_the_wrong_flavour_name_the_fix(emulator: Emulator) -> None:
    aclient = harpoon.AsyncHostedAI(BASE_URL, API_KEY, http_client=emulator.async_http_client())
    allocation = await aclient.create_allocation("gemma-3-270m")
    async with aclient.stream(allocation.id, "hello") as chunks:
        with pytest.raises(harpoon.UsageError, match="async for"):
            for _ in chunks:
                pass
    client = harpoon.HostedAI(BASE_URL, API_KEY, http_client=emulator.http_client())
    with (
        client.stream(allocation.id, "hello") as stream,
        pytest.raises(harpoon.UsageError, match="`for`"),
    ):
        async for _ in stream:
            pass


async def test_a_leases_streams_of_the_wrong_flavour_name_the_fix(emulator: Emulator) -> None:
    async with (
        harpoon.AsyncHostedAI(BASE_URL, API_KEY, http_client=emulator.async_http_client()) as ac,
        ac.allocate(model=MODEL) as alease,
        alease.stream("hello") as chunks,
    ):
        with pytest.raises(harpoon.UsageError, match="async for"):
            for _ in chunks:
                pass
    with (
        harpoon.HostedAI(BASE_URL, API_KEY, http_client=emulator.http_client()) as client,
        client.allocate(model=MODEL) as lease,
        lease.stream("hello") as stream,
        pytest.raises(harpoon.UsageError, match="`for`"),
    ):
        async for _ in stream:
            pass
    assert emulator.live_allocations() == []


def test_usage_errors_are_configuration_and_type_errors() -> None:
    assert issubclass(harpoon.UsageError, harpoon.ConfigurationError)
    assert issubclass(harpoon.UsageError, TypeError)


# 15. Precedence, base URLs -----------------------------------------------------------------


def test_max_retries_contradicting_the_retry_policy_is_refused(on_dialect: str) -> None:
    with pytest.raises(harpoon.ConfigurationError, match="only one"):
        harpoon.HostedAI(BASE_URL, API_KEY, max_retries=5, retry=harpoon.RetryPolicy(max_retries=0))
    client = harpoon.HostedAI(BASE_URL, API_KEY, retry=harpoon.RetryPolicy(max_retries=0))
    assert client.max_retries == 0  # a full policy wins over the default max_retries
    with pytest.raises(harpoon.ConfigurationError, match="only one"):
        client.with_options(max_retries=4, retry=harpoon.RetryPolicy(max_retries=1))
    assert client.with_options(max_retries=4).max_retries == 4
    assert client.with_options(retry=harpoon.RetryPolicy(max_retries=3)).max_retries == 3


@pytest.mark.v1_only("the platform's paths are under /api (the next test)")
@pytest.mark.parametrize(
    "base_url", ["http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080"]
)
def test_a_base_url_ending_in_v1_is_accepted(emulator: Emulator, base_url: str) -> None:
    client = harpoon.HostedAI(base_url, API_KEY, http_client=emulator.http_client())
    assert client.base_url == "http://127.0.0.1:8080"
    assert client.health().status == "ok"
    assert [e.path for e in emulator.exchanges] == ["/v1/health"]


@pytest.mark.parametrize(
    "base_url",
    ["http://127.0.0.1:8080/api", "http://127.0.0.1:8080/api/", "http://127.0.0.1:8080"],
)
def test_a_platform_base_url_ending_in_api_is_accepted(
    emulator: Emulator, dialect: str, base_url: str
) -> None:
    if dialect == "v1":
        pytest.skip("the platform's base URL")
    client = harpoon.HostedAI(base_url, API_KEY, http_client=emulator.http_client())
    assert client.base_url == "http://127.0.0.1:8080"
    assert client.health().status == "ok"
    assert [e.path for e in emulator.exchanges] == ["/api/gpuaas/available-pools"]


@pytest.mark.parametrize(
    "options",
    [
        {"timeout": -1},
        {"max_response_bytes": 0},
        {"default_headers": {"x": "é"}},
        {"base_url": "ftp://nowhere"},
        {"circuit_breaker": True},
        {"retry": "often"},
    ],
    ids=["timeout", "max_response_bytes", "default_headers", "base_url", "breaker", "retry"],
)
@pytest.mark.parametrize("client_class", [harpoon.HostedAI, harpoon.AsyncHostedAI])
def test_a_client_that_cannot_be_made_leaves_the_key_in_no_frame(
    on_dialect: str,
    client_class: type[harpoon.HostedAI | harpoon.AsyncHostedAI],
    options: dict[str, Any],
) -> None:
    arguments = {"base_url": BASE_URL, "api_key": API_KEY, **options}
    with pytest.raises(harpoon.ConfigurationError) as raised:
        client_class(**arguments)
    frames = [
        f for f, _ in traceback.walk_tb(raised.tb) if f.f_code.co_filename.startswith(PACKAGE_DIR)
    ]
    assert frames  # the check looked at the package's own frames
    assert API_KEY not in _locals_shown(raised.tb)  # and every local's repr works


def test_credentials_in_a_base_url_are_not_echoed(on_dialect: str) -> None:
    with pytest.raises(harpoon.ConfigurationError) as raised:
        harpoon.HostedAI("ftp://me:sk-in-the-url@host/", API_KEY)
    assert "sk-in-the-url" not in str(raised.value)


@pytest.mark.v1_only("client.stream(allocation_id) is v1's; a lease's stream takes no timeout")
async def test_an_async_stream_refuses_a_bad_timeout_when_it_is_made(emulator: Emulator) -> None:
    client = harpoon.AsyncHostedAI(BASE_URL, API_KEY, http_client=emulator.async_http_client())
    with pytest.raises(harpoon.ConfigurationError, match="timeout"):
        client.stream("alloc-1", "hello", timeout=-1)
    assert emulator.exchanges == []
