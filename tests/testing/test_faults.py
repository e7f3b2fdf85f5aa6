"""Injected faults, in-process, through both the sync and the async transport."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from fnmatch import fnmatchcase
from typing import Any

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostedai_harpoon.testing import Emulator, EmulatorTransport, Fault, FaultKind, FaultPlan
from hostedai_harpoon.testing._api import ROUTES
from hostedai_harpoon.testing._openai import STANDALONE_ROUTES
from tests.conftest import EmulatorFactory

from .conftest import AUTH

Send = Callable[..., httpx.Response]
ALLOC = {"model": "gemma-3-270m"}


async def _send_async(emu: Emulator, method: str, path: str, **kwargs: Any) -> httpx.Response:
    async with emu.async_http_client(headers=AUTH) as http:
        response = await http.request(method, path, **kwargs)
        await response.aread()
        return response


@pytest.fixture(params=["sync", "async"])
def sender(request: pytest.FixtureRequest) -> Callable[[Emulator], Send]:
    """Send one request to an emulator through the sync or the async in-process transport."""

    def bind(emu: Emulator) -> Send:
        if request.param == "sync":
            http = emu.http_client(headers=AUTH)
            request.addfinalizer(http.close)
            return http.request
        return lambda method, path, **kw: asyncio.run(_send_async(emu, method, path, **kw))

    return bind


def _error(response: httpx.Response) -> dict[str, Any]:
    error: dict[str, Any] = response.json()["error"]
    assert error["request_id"] == response.headers["x-request-id"]
    return error


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (500, "internal_error"),
        (502, "bad_gateway"),
        (503, "service_unavailable"),
        (504, "gateway_timeout"),
    ],
)
def test_error_fault_answers_a_5xx_envelope_without_processing(
    make_emulator: EmulatorFactory, sender: Callable[[Emulator], Send], status: int, code: str
) -> None:
    emu = make_emulator(faults=FaultPlan(rules=[Fault("error", status=status, times=1)]))
    send = sender(emu)
    response = send("POST", "/v1/allocate", json=ALLOC)
    assert response.status_code == status
    assert _error(response)["code"] == code
    assert _error(response)["type"] == "api_error"
    assert "retry-after" not in response.headers
    assert emu.live_allocations() == []
    assert emu.exchanges[0].fault == "error"
    assert send("POST", "/v1/allocate", json=ALLOC).status_code == 201


def test_error_fault_after_processing_keeps_the_side_effect(
    make_emulator: EmulatorFactory, sender: Callable[[Emulator], Send]
) -> None:
    fault = Fault(
        "error",
        method="POST",
        path="/v1/allocate",
        status=503,
        retry_after=2,
        when="after",
        times=1,
    )
    emu = make_emulator(faults=FaultPlan(rules=[fault]))
    response = sender(emu)("POST", "/v1/allocate", json=ALLOC, headers={"Idempotency-Key": "k"})
    assert response.status_code == 503
    assert response.headers["retry-after"] == "2"
    [allocation] = emu.live_allocations()
    assert emu.exchanges[0].allocation_id == allocation.id
    assert emu.created_by_key() == {"k": [allocation.id]}
    # The server processed it, so the key is bound: the retry replays the allocation.
    retry = sender(emu)("POST", "/v1/allocate", json=ALLOC, headers={"Idempotency-Key": "k"})
    assert (retry.status_code, retry.headers["idempotent-replayed"]) == (201, "true")
    assert retry.json()["id"] == allocation.id


def test_rate_limit_fault_carries_retry_after(
    make_emulator: EmulatorFactory, sender: Callable[[Emulator], Send]
) -> None:
    emu = make_emulator(faults=FaultPlan(rate_limit_rate=1.0, retry_after=3))
    response = sender(emu)("GET", "/v1/pools")
    assert response.status_code == 429
    assert response.headers["retry-after"] == "3"
    assert _error(response) | {"message": "", "request_id": ""} == {
        "type": "rate_limit_error",
        "code": "rate_limited",
        "message": "",
        "request_id": "",
    }


def test_rate_limit_retry_after_as_http_date_or_literal(
    make_emulator: EmulatorFactory, sender: Callable[[Emulator], Send]
) -> None:
    literal = "Wed, 21 Oct 2015 07:28:00 GMT"
    rules = [
        Fault("rate_limit", retry_after=30, retry_after_http_date=True, times=1),
        Fault("rate_limit", retry_after=literal, times=1),
    ]
    send = sender(make_emulator(faults=FaultPlan(rules=rules)))
    as_date = parsedate_to_datetime(send("GET", "/v1/pools").headers["retry-after"])
    assert 25 <= as_date.timestamp() - time.time() <= 31
    assert send("GET", "/v1/pools").headers["retry-after"] == literal


def test_latency_fault_delays_the_answer(
    make_emulator: EmulatorFactory, sender: Callable[[Emulator], Send]
) -> None:
    emu = make_emulator(faults=FaultPlan(rules=[Fault("latency", delay=0.1)]))
    started = time.monotonic()
    response = sender(emu)("GET", "/v1/pools")
    assert time.monotonic() - started >= 0.1
    assert response.status_code == 200
    assert emu.exchanges[0].fault == "latency"


def test_latency_beyond_the_read_timeout_times_out_after_the_timeout(
    make_emulator: EmulatorFactory, sender: Callable[[Emulator], Send]
) -> None:
    emu = make_emulator(faults=FaultPlan(rules=[Fault("latency", delay=30)]))
    started = time.monotonic()
    with pytest.raises(httpx.ReadTimeout):
        sender(emu)("POST", "/v1/allocate", json=ALLOC, timeout=0.05)
    assert 0.05 <= time.monotonic() - started < 5
    assert len(emu.live_allocations()) == 1  # the server did the work; the client gave up


def test_drop_before_raises_a_protocol_error_and_changes_nothing(
    make_emulator: EmulatorFactory, sender: Callable[[Emulator], Send]
) -> None:
    emu = make_emulator(faults=FaultPlan(rules=[Fault("drop", times=1)]))
    with pytest.raises(httpx.RemoteProtocolError):
        sender(emu)("POST", "/v1/allocate", json=ALLOC)
    assert emu.live_allocations() == []
    [exchange] = emu.exchanges
    assert (exchange.status, exchange.fault, exchange.allocation_id) == (None, "drop", None)


def test_drop_after_loses_the_answer_of_a_processed_request(
    make_emulator: EmulatorFactory, sender: Callable[[Emulator], Send]
) -> None:
    emu = make_emulator(
        faults=FaultPlan(rules=[Fault("drop", method="POST", when="after", times=1)])
    )
    send = sender(emu)
    key = {"Idempotency-Key": "lost-answer"}
    with pytest.raises(httpx.RemoteProtocolError):
        send("POST", "/v1/allocate", json=ALLOC, headers=key)
    [allocation] = emu.live_allocations()
    assert emu.exchanges[0].allocation_id == allocation.id
    assert emu.exchanges[0].status is None
    retry = send("POST", "/v1/allocate", json=ALLOC, headers=key)
    assert retry.headers["idempotent-replayed"] == "true"
    assert retry.json()["id"] == allocation.id


def test_drop_after_release_has_released(
    make_emulator: EmulatorFactory, sender: Callable[[Emulator], Send]
) -> None:
    emu = make_emulator(faults=FaultPlan(rules=[Fault("drop", method="DELETE", when="after")]))
    send = sender(emu)
    alloc_id = send("POST", "/v1/allocate", json=ALLOC).json()["id"]
    with pytest.raises(httpx.RemoteProtocolError):
        send("DELETE", f"/v1/allocate/{alloc_id}")
    assert emu.live_allocations() == []


def test_malformed_fault_keeps_the_status_but_the_body_is_not_json(
    make_emulator: EmulatorFactory, sender: Callable[[Emulator], Send]
) -> None:
    emu = make_emulator(faults=FaultPlan(malformed_rate=1.0))
    response = sender(emu)("POST", "/v1/allocate", json=ALLOC)
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    with pytest.raises(json.JSONDecodeError):
        response.json()
    assert len(emu.live_allocations()) == 1


def test_truncate_fault_cuts_valid_json_in_a_complete_message(
    make_emulator: EmulatorFactory, sender: Callable[[Emulator], Send]
) -> None:
    emu = make_emulator(faults=FaultPlan(truncate_rate=1.0))
    response = sender(emu)("GET", "/v1/pools")
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content)
    assert response.content.startswith(b'{"data":[{"id":"gpu-pool-1"')
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_invalid_schema_fault_sends_json_of_the_wrong_shape(
    make_emulator: EmulatorFactory, sender: Callable[[Emulator], Send]
) -> None:
    emu = make_emulator(faults=FaultPlan(rules=[Fault("invalid_schema", path="/v1/allocate")]))
    body = sender(emu)("POST", "/v1/allocate", json=ALLOC).json()
    assert "id" not in body
    assert body["gpu_count"] == "1"
    assert body["model"] == "gemma-3-270m"


@pytest.mark.parametrize("kind", ["truncate", "malformed", "invalid_schema"])
def test_body_faults_also_corrupt_event_streams(make_emulator: EmulatorFactory, kind: str) -> None:
    emu = make_emulator(faults=FaultPlan(rules=[Fault(kind, path="/v1/inference")]))
    with emu.http_client(headers=AUTH) as http:
        alloc_id = http.post("/v1/allocate", json=ALLOC).json()["id"]
        body = {"allocation_id": alloc_id, "prompt": "p", "max_tokens": 4, "stream": True}
        text = http.post("/v1/inference", json=body).text
    events = [chunk[6:] for chunk in text.split("\n\n") if chunk]
    if kind == "truncate":
        assert len(events) == 3
        assert "[DONE]" not in events
        return
    assert events[-1] == "[DONE]"
    if kind == "malformed":
        with pytest.raises(json.JSONDecodeError):
            json.loads(events[0])
    else:
        assert "id" not in json.loads(events[0])


def test_rules_with_times_script_an_exact_sequence(
    make_emulator: EmulatorFactory, sender: Callable[[Emulator], Send]
) -> None:
    rules = [
        Fault("error", method="post", path="/v1/allocate", status=503, times=2),
        Fault("rate_limit", path="/v1/allocate/*", times=1),
    ]
    send = sender(make_emulator(faults=FaultPlan(rules=rules)))
    assert send("GET", "/v1/pools").status_code == 200
    statuses = [send("POST", "/v1/allocate", json=ALLOC).status_code for _ in range(3)]
    assert statuses == [503, 503, 201]
    assert send("GET", "/v1/allocate").status_code == 200
    assert send("GET", "/v1/allocate/alloc_x").status_code == 429
    assert send("GET", "/v1/allocate/alloc_x").status_code == 404


def test_plan_paths_limit_the_rate_faults(make_emulator: EmulatorFactory) -> None:
    plan = FaultPlan(error_rate=1.0, paths=["/v1/allocate", ("GET", "/v1/pools/*")])
    emu = make_emulator(faults=plan)
    with emu.http_client(headers=AUTH) as http:
        assert http.get("/v1/pools").status_code == 200
        assert http.get("/v1/health").status_code == 200
        assert http.get("/v1/pools/gpu-pool-1").status_code >= 500
        assert http.get("/v1/allocate/x").status_code >= 500


def _fault_sequence(
    make_emulator: EmulatorFactory, plan: FaultPlan
) -> list[tuple[str | None, int | None]]:
    emu = make_emulator(faults=plan)
    with emu.http_client(headers=AUTH) as http:
        for _ in range(60):
            with contextlib.suppress(httpx.TransportError):
                http.get("/v1/pools", timeout=0.001)
    return [(exchange.fault, exchange.status) for exchange in emu.exchanges]


def test_same_seed_same_faults_other_seed_other_faults(make_emulator: EmulatorFactory) -> None:
    def plan(seed: int) -> FaultPlan:
        return FaultPlan(
            error_rate=0.2, rate_limit_rate=0.1, drop_rate=0.1, malformed_rate=0.1,
            truncate_rate=0.1, latency_rate=0.05, latency=0.002, seed=seed,
            rules=[Fault("error", rate=0.5, path="/v1/pools", times=3)],
        )  # fmt: skip

    first = _fault_sequence(make_emulator, plan(7))
    assert first == _fault_sequence(make_emulator, plan(7))
    assert first != _fault_sequence(make_emulator, plan(8))
    kinds = {kind for kind, _ in first}
    assert {None, "error", "rate_limit", "drop", "malformed", "truncate"} <= kinds
    assert {status for kind, status in first if kind == "error"} <= {500, 502, 503, 504}


def test_setting_a_plan_restarts_its_sequence(make_emulator: EmulatorFactory) -> None:
    plan = FaultPlan(rules=[Fault("error", status=500, times=1)])
    emu = make_emulator(faults=plan)
    with emu.http_client(headers=AUTH) as http:
        assert http.get("/v1/pools").status_code == 500
        assert http.get("/v1/pools").status_code == 200
        emu.faults = plan
        assert http.get("/v1/pools").status_code == 500
        emu.faults = None
        assert http.get("/v1/pools").status_code == 200


def test_test_hooks_are_never_faulted(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(faults=FaultPlan(error_rate=1.0))
    emu.set_capacity("gpu-pool-1", 4)
    assert emu.pools()[0].gpus_total == 4
    assert emu.live_allocations() == []
    assert emu.exchanges == []


@pytest.mark.parametrize(
    "build",
    [
        lambda: FaultPlan(error_rate=0.6, drop_rate=0.5),
        lambda: FaultPlan(error_rate=1.5),
        lambda: FaultPlan(error_statuses=(404,)),
        lambda: Fault("error", status=429),
        lambda: Fault("drop", when="during"),  # type: ignore[arg-type]
        lambda: Fault("explode"),
        lambda: Fault("drop", rate=2.0),
    ],
)
def test_invalid_plans_are_refused(build: Callable[[], object]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011
        build()


@pytest.mark.parametrize(
    "spelling", ["rate-limit", "rate_limit", "RATE-LIMIT", FaultKind.RATE_LIMIT]
)
def test_a_fault_kind_may_be_spelled_with_a_hyphen_as_on_the_command_line(
    spelling: str,
) -> None:
    assert Fault(spelling).kind is FaultKind.RATE_LIMIT
    assert Fault("invalid-schema").kind is FaultKind.INVALID_SCHEMA


@pytest.mark.parametrize("kind", ["explode", "ratelimit", "", None])
def test_an_unknown_fault_kind_lists_the_valid_kinds(kind: str) -> None:
    with pytest.raises(ValueError, match="unknown fault kind") as caught:
        Fault(kind)

    assert all(valid.value in str(caught.value) for valid in FaultKind)


def test_a_hyphenated_kind_injects_the_same_fault(sender: Callable[[Emulator], Send]) -> None:
    emu = Emulator(faults=FaultPlan(rules=[Fault("rate-limit", path="/v1/pools", times=1)]))
    send = sender(emu)

    assert send("GET", "/v1/pools").status_code == 429
    assert send("GET", "/v1/pools").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/v1/allocations/*",
        "/v1/allocate/*/release",
        "/v1/allocate/",
        "/v1/pool",
        "/v1/inferences",
        "/v2/*",
        "v1/health",
        "/v1/allocate/x/y",
    ],
)
def test_a_fault_path_that_matches_no_route_is_refused(path: str) -> None:
    with pytest.raises(ValueError, match="matches no route of the API") as caught:
        Fault("error", path=path)

    assert "/v1/allocate/*/renew" in str(caught.value)


@pytest.mark.parametrize(
    "path",
    [
        *ROUTES,
        "*",
        "/v1/*",
        "/v1/allocate*",
        "/v1/allocate/*/*",
        "/v1/allocate/alloc_[0-9a-f]*",
        "/v1/pools/gpu-pool-1",
        "/v1/pools/?*",
        "*/renew",
        "/v1/[ip]*",
    ],
)
def test_a_fault_path_that_can_match_a_route_is_accepted(path: str) -> None:
    assert Fault("error", path=path).path == path


ID = st.text(st.characters(codec="ascii", exclude_characters="/"), min_size=1, max_size=4)
GLOB_PIECES = st.sampled_from(
    ["/", "v1", "allocate", "pools", "renew", "inference", "health", "*", "?", "a", "[a-z]", "[!/]"]
)


@settings(max_examples=300, deadline=None)
@given(glob=st.lists(GLOB_PIECES, max_size=8).map("".join), ids=st.lists(ID, min_size=2))
def test_a_glob_that_matches_a_real_request_path_is_always_accepted(
    glob: str, ids: list[str]
) -> None:
    paths = [route.replace("*", ids[i % len(ids)]) for i, route in enumerate(ROUTES)]
    paths += [route.replace("*", ids[-1]) for route in ROUTES]
    if any(fnmatchcase(path, glob) for path in paths):
        assert Fault("error", path=glob).path == glob


def test_plan_path_filters_that_match_no_route_are_refused() -> None:
    with pytest.raises(ValueError, match="'/v1/allocations' matches no route"):
        FaultPlan(error_rate=0.5, paths=["/v1/allocations"])
    with pytest.raises(ValueError, match="'/v1/allocate/\\*/release' matches no route"):
        FaultPlan(error_rate=0.5, paths=[("POST", "/v1/allocate/*/release")])
    assert FaultPlan(paths=["/v1/alloc", ("DELETE", "/v1/allocate/*")]).paths is not None


@pytest.mark.parametrize("documented", [Fault, FaultPlan])
def test_the_docstrings_list_every_fault_kind_and_every_wire_path(documented: type) -> None:
    doc = documented.__doc__ or ""

    assert all(f"``{kind.value}``" in doc for kind in FaultKind), doc
    assert all(f"``{route}``" in doc for route in ROUTES), doc


def test_the_wire_paths_a_glob_is_checked_against_are_the_routes_the_api_answers(
    emulator: Emulator,
) -> None:
    standalone = httpx.Client(transport=EmulatorTransport(emulator.openai_server()))
    with emulator.http_client(headers=AUTH) as http, standalone:
        for route in ROUTES:
            # The standalone OpenAI-compatible server's paths are its own, not the API's.
            server = standalone if route in STANDALONE_ROUTES else http
            answer = server.get(f"http://emulator.local{route.replace('*', 'some-id')}")
            code = answer.json()["error"]["code"] if answer.is_error else None
            assert code != "route_not_found", route
        unknown = http.get("/v1/allocations")

    assert unknown.json()["error"]["code"] == "route_not_found"
