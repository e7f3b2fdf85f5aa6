"""Regressions from the attack on the clients (hardening issue, items 6, 7, 9, 10, 12, 13, 15)."""

from __future__ import annotations

import json
import pickle
import traceback
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
    ClientFactory,
    call,
    mock_async_client,
    mock_client,
)

# 6. A key that cannot be sent ------------------------------------------------------------


@pytest.mark.parametrize(
    "key", ["sk-“pasted”", "sk-naïve", "sk with space", "sk-tab\tkey", "sk-\x7f"]
)
@pytest.mark.parametrize("client_class", [harpoon.HostedAI, harpoon.AsyncHostedAI])
def test_a_key_that_cannot_be_sent_is_refused_without_echoing_it(
    key: str, client_class: type[harpoon.HostedAI | harpoon.AsyncHostedAI]
) -> None:
    with pytest.raises(harpoon.ConfigurationError) as raised:
        client_class(BASE_URL, key)
    shown = repr(raised.value) + str(raised.value) + repr(pickle.loads(pickle.dumps(raised.value)))
    assert key not in shown
    assert "printable ASCII" in str(raised.value)


def test_default_headers_that_cannot_be_sent_are_refused() -> None:
    with pytest.raises(harpoon.ConfigurationError, match="default_headers"):
        harpoon.HostedAI(BASE_URL, API_KEY, default_headers={"x-team": "café"})


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


class _ExplodingClient(httpx.Client):
    def build_request(self, *args: Any, **kwargs: Any) -> httpx.Request:
        raise RuntimeError("the request could not be built")


class _ExplodingAsyncClient(httpx.AsyncClient):
    def build_request(self, *args: Any, **kwargs: Any) -> httpx.Request:
        raise RuntimeError("the request could not be built")


@pytest.mark.parametrize("flavor", ["sync", "async"])
async def test_a_request_that_cannot_be_built_leaves_the_key_in_no_frame(flavor: str) -> None:
    client: Any = (
        harpoon.HostedAI(BASE_URL, API_KEY, http_client=_ExplodingClient())
        if flavor == "sync"
        else harpoon.AsyncHostedAI(BASE_URL, API_KEY, http_client=_ExplodingAsyncClient())
    )
    with pytest.raises(RuntimeError) as raised:
        await call(client, "infer", "alloc-1", "hello", max_tokens=3)
    shown = _locals_shown(raised.value.__traceback__)
    names = [frame.f_code.co_name for frame, _ in traceback.walk_tb(raised.tb)]
    assert "build_request" in names  # it failed below the SDK's own request building
    assert API_KEY not in shown


@pytest.mark.parametrize("flavor", ["sync", "async"])
async def test_an_undecodable_body_chains_no_error_holding_the_key(flavor: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            headers={"content-encoding": "gzip"},
            stream=httpx.ByteStream(b"this is not gzip at all"),
        )

    client: Any = mock_client(handler) if flavor == "sync" else mock_async_client(handler)
    with pytest.raises(harpoon.ResponseValidationError) as raised:
        await call(client, "health")
    assert API_KEY not in _everything_shown(raised.value)


@pytest.mark.parametrize("flavor", ["sync", "async"])
async def test_a_failed_connection_chains_no_error_holding_the_key(flavor: str) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    client: Any = (
        mock_client(handler, max_retries=0)
        if flavor == "sync"
        else mock_async_client(handler, max_retries=0)
    )
    with pytest.raises(harpoon.APIConnectionError) as raised:
        await call(client, "health")
    assert API_KEY not in _everything_shown(raised.value)


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


@pytest.mark.parametrize("client_class", [harpoon.HostedAI, harpoon.AsyncHostedAI])
@pytest.mark.parametrize("header", ["X-Api-Key", "X-Forwarded-Key"])
def test_a_key_in_default_headers_is_in_no_frame_of_a_failed_construction(
    client_class: type, header: str
) -> None:
    with pytest.raises(harpoon.ConfigurationError) as raised:
        client_class(BASE_URL, API_KEY, default_headers={header: API_KEY}, max_response_bytes=0)
    frames = [frame for frame, _ in traceback.walk_tb(raised.value.__traceback__)]
    assert len(frames) >= 2
    assert all(API_KEY not in repr(value) for f in frames for value in f.f_locals.values())


def test_a_bad_base_url_leaves_the_key_in_no_frame_of_the_settings() -> None:
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
    ("allocation_id", {"allocation_id": ""}),
    ("allocation_id", {"allocation_id": ".."}),
    ("allocation_id", {"allocation_id": None}),
    ("allocation_id", {"allocation_id": "alloc-\ud800"}),
]


@pytest.mark.parametrize("method", ["infer", "stream"])
@pytest.mark.parametrize(("name", "change"), INFER_CASES)
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


@pytest.mark.parametrize("method", ["get_allocation", "renew_allocation", "release_allocation"])
async def test_an_unsendable_allocation_id_is_a_configuration_error(
    make_client: ClientFactory, emulator: Emulator, method: str
) -> None:
    client = make_client(emulator)
    with pytest.raises(harpoon.ConfigurationError, match=r"^allocation_id "):
        await call(client, method, "alloc-\udfff")
    assert emulator.exchanges == []


async def test_good_edge_values_still_go_through(
    make_client: ClientFactory, emulator: Emulator
) -> None:
    client = make_client(emulator)
    allocation = await call(client, "create_allocation", "gemma-3-270m", gpus=2, ttl=86_400)
    result = await call(
        client,
        "infer",
        allocation.id,
        "ü",
        max_tokens=1,
        temperature=0,
        stop=("a", "b", "c", "d"),
    )
    assert result.allocation_id == allocation.id
    sent = json.loads(emulator.requests_to("POST", "/v1/inference")[0].request_body)
    assert sent["stop"] == ["a", "b", "c", "d"]


# 10. Numbers that are not JSON --------------------------------------------------------------


@pytest.mark.parametrize("constant", ["Infinity", "-Infinity", "NaN", "1e999"])
async def test_a_json_answer_with_a_non_json_number_is_a_validation_error(
    flavor: str, constant: str
) -> None:
    body = (
        '{"id":"inf_1","allocation_id":"a","model":"m","text":"t","finish_reason":"stop",'
        f'"usage":{{"input_tokens":1,"output_tokens":1}},"latency_ms":{constant}}}'
    )

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, content=body.encode(), headers={"x-request-id": "r"})

    client: Any = mock_client(handler) if flavor == "sync" else mock_async_client(handler)
    with pytest.raises(harpoon.ResponseValidationError, match=constant):
        await call(client, "infer", "a", "hello")


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


async def test_the_sync_client_under_async_with_names_the_fix() -> None:
    with pytest.raises(harpoon.UsageError, match="AsyncHostedAI"):
        async with harpoon.HostedAI(BASE_URL, API_KEY):
            pass


def test_the_async_client_under_with_names_the_fix() -> None:
    with (
        pytest.raises(harpoon.UsageError, match="async with AsyncHostedAI"),
        harpoon.AsyncHostedAI(BASE_URL, API_KEY),
    ):
        pass


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


def test_usage_errors_are_configuration_and_type_errors() -> None:
    assert issubclass(harpoon.UsageError, harpoon.ConfigurationError)
    assert issubclass(harpoon.UsageError, TypeError)


# 15. Precedence, base URLs -----------------------------------------------------------------


def test_max_retries_contradicting_the_retry_policy_is_refused() -> None:
    with pytest.raises(harpoon.ConfigurationError, match="only one"):
        harpoon.HostedAI(BASE_URL, API_KEY, max_retries=5, retry=harpoon.RetryPolicy(max_retries=0))
    client = harpoon.HostedAI(BASE_URL, API_KEY, retry=harpoon.RetryPolicy(max_retries=0))
    assert client.max_retries == 0  # a full policy wins over the default max_retries
    with pytest.raises(harpoon.ConfigurationError, match="only one"):
        client.with_options(max_retries=4, retry=harpoon.RetryPolicy(max_retries=1))
    assert client.with_options(max_retries=4).max_retries == 4
    assert client.with_options(retry=harpoon.RetryPolicy(max_retries=3)).max_retries == 3


@pytest.mark.parametrize(
    "base_url", ["http://127.0.0.1:8080/v1", "http://127.0.0.1:8080/v1/", "http://127.0.0.1:8080"]
)
def test_a_base_url_ending_in_v1_is_accepted(emulator: Emulator, base_url: str) -> None:
    client = harpoon.HostedAI(base_url, API_KEY, http_client=emulator.http_client())
    assert client.base_url == "http://127.0.0.1:8080"
    assert client.health().status == "ok"
    assert [e.path for e in emulator.exchanges] == ["/v1/health"]


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
    client_class: type[harpoon.HostedAI | harpoon.AsyncHostedAI], options: dict[str, Any]
) -> None:
    arguments = {"base_url": BASE_URL, "api_key": API_KEY, **options}
    with pytest.raises(harpoon.ConfigurationError) as raised:
        client_class(**arguments)
    frames = [
        f for f, _ in traceback.walk_tb(raised.tb) if f.f_code.co_filename.startswith(PACKAGE_DIR)
    ]
    assert frames  # the check looked at the package's own frames
    assert API_KEY not in _locals_shown(raised.tb)  # and every local's repr works


def test_credentials_in_a_base_url_are_not_echoed() -> None:
    with pytest.raises(harpoon.ConfigurationError) as raised:
        harpoon.HostedAI("ftp://me:sk-in-the-url@host/", API_KEY)
    assert "sk-in-the-url" not in str(raised.value)


async def test_an_async_stream_refuses_a_bad_timeout_when_it_is_made(emulator: Emulator) -> None:
    client = harpoon.AsyncHostedAI(BASE_URL, API_KEY, http_client=emulator.async_http_client())
    with pytest.raises(harpoon.ConfigurationError, match="timeout"):
        client.stream("alloc-1", "hello", timeout=-1)
    assert emulator.exchanges == []
