"""Property-based conformance: the emulator answers generated requests as docs/openapi.yaml says.

Schemathesis generates requests from the document, sends them to an emulator served over TCP,
and checks each answer: no server error (503 ``capacity_exhausted`` is a documented answer, not
a failure), a documented status, content type, headers and body. The conftest's
``make_emulator`` fixture then runs our own checker (tests/conformance.py) over everything the
emulator logged. Generation is derandomized, so a failure reproduces on every run.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import hypothesis
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from hostedai_harpoon.testing import DEFAULT_MODELS
from tests.conformance import SPEC_PATH, check_response
from tests.conftest import EmulatorFactory

pytestmark = pytest.mark.slow

Case = schemathesis.Case[Any]

# Read every event of a stream (up to max_tokens deltas), not schemathesis's default twenty.
SCHEMA = schemathesis.openapi.from_path(
    SPEC_PATH, config=schemathesis.Config.from_dict({"max-stream-events": 40_000})
)
AUTH = {"Authorization": "Bearer test"}
CHECKS: list[Callable[..., Any]] = [
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
OPERATION_IDS = [
    "createAllocation",
    "getAllocation",
    "listAllocations",
    "renewAllocation",
    "releaseAllocation",
    "createInference",
    "listPools",
    "getPool",
    "getHealth",
]
# The operations whose parameters or body carry examples in the document.
EXAMPLE_OPERATION_IDS = [
    operation_id
    for operation_id in OPERATION_IDS
    if SCHEMA.get_strategies_from_examples(SCHEMA.find_operation_by_id(operation_id))
]
FRAMING_HEADERS = frozenset({"content-length", "transfer-encoding", "host", "connection"})
GENERATED = settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=list(HealthCheck),
    phases=[hypothesis.Phase.explicit, hypothesis.Phase.generate],
)


@pytest.fixture
def base_url(make_emulator: EmulatorFactory) -> Iterator[str]:
    """A fresh default emulator over TCP; its exchange log is checked at teardown."""
    with make_emulator().serve() as url:
        yield url


@pytest.fixture
def session() -> Iterator[requests.Session]:
    """One connection pool for all the cases of a test."""
    with requests.Session() as http:
        yield http


def keeps_http_framing(case: Case) -> bool:
    """Whether ``case`` leaves the headers that frame an HTTP message alone.

    A garbage ``Content-Length`` is refused by the HTTP server (uvicorn answers a plain-text
    400) before the API sees the request, so it says nothing about the wire contract.
    """
    return not any(name.lower() in FRAMING_HEADERS for name in case.headers or {})


def assert_not_a_server_error(response: schemathesis.Response) -> None:
    """5xx is a failure, except 503 ``capacity_exhausted``: the pool is legitimately full."""
    if response.status_code < 500:
        return
    if response.status_code == 503 and b'"capacity_exhausted"' in response.content:
        error = json.loads(response.content)["error"]
        if error["code"] == "capacity_exhausted":
            return
    raise AssertionError(f"server error {response.status_code}: {response.content[:300]!r}")


def send_and_check(case: Case, base_url: str, session: requests.Session) -> None:
    """Send ``case`` to the emulator and check the answer with schemathesis and our checker."""
    response = case.call(base_url=base_url, session=session, headers=AUTH)
    assert_not_a_server_error(response)
    case.validate_response(response, checks=CHECKS, headers=AUTH)
    headers = {name: values[0] for name, values in response.headers.items()}
    path = unquote(urlsplit(response.request.url).path)
    check_response(
        case.method,
        path,
        response.status_code,
        headers,
        response.content,
        truncated=response.stream_cut_short,
    )


@pytest.mark.parametrize("operation_id", OPERATION_IDS)
def test_valid_requests_get_documented_answers(
    base_url: str, session: requests.Session, operation_id: str
) -> None:
    operation = SCHEMA.find_operation_by_id(operation_id)

    @GENERATED
    @given(case=operation.as_strategy(generation_mode=schemathesis.GenerationMode.POSITIVE))
    def run(case: Case) -> None:
        send_and_check(case, base_url, session)

    run()


# Operations without parameters or a body have no invalid request to make.
@pytest.mark.parametrize(
    "operation_id", [op for op in OPERATION_IDS if op not in ("listPools", "getHealth")]
)
def test_invalid_requests_get_documented_answers(
    base_url: str, session: requests.Session, operation_id: str
) -> None:
    operation = SCHEMA.find_operation_by_id(operation_id)

    @GENERATED
    @given(
        case=operation.as_strategy(generation_mode=schemathesis.GenerationMode.NEGATIVE).filter(
            keeps_http_framing
        )
    )
    def run(case: Case) -> None:
        send_and_check(case, base_url, session)

    run()


@pytest.mark.parametrize("operation_id", EXAMPLE_OPERATION_IDS)
def test_documented_examples_get_documented_answers(
    base_url: str, session: requests.Session, operation_id: str
) -> None:
    strategies = SCHEMA.get_strategies_from_examples(SCHEMA.find_operation_by_id(operation_id))

    @GENERATED
    @given(case=st.one_of(strategies))
    def run(case: Case) -> None:
        send_and_check(case, base_url, session)

    run()


def allocate(base_url: str, session: requests.Session, model: str) -> str:
    """The id of a new one-GPU allocation of ``model``."""
    response = session.post(f"{base_url}/v1/allocate", json={"model": model}, headers=AUTH)
    assert response.status_code == 201, response.text
    allocation_id: str = response.json()["id"]
    return allocation_id


@pytest.mark.parametrize(
    "operation_id", ["getAllocation", "renewAllocation", "releaseAllocation", "createInference"]
)
def test_requests_about_real_allocations_get_documented_answers(
    base_url: str, session: requests.Session, operation_id: str
) -> None:
    """Generated requests aimed at allocations that exist: live, of either model, or released."""
    allocation_ids = [allocate(base_url, session, model) for model in DEFAULT_MODELS * 2]
    released = allocate(base_url, session, DEFAULT_MODELS[0])
    assert session.delete(f"{base_url}/v1/allocate/{released}", headers=AUTH).status_code == 204
    allocation_ids.append(released)
    operation = SCHEMA.find_operation_by_id(operation_id)
    if operation_id == "createInference":
        cases = st.tuples(operation.as_strategy(), st.sampled_from(allocation_ids)).map(
            aimed_at_allocation
        )
    else:
        cases = st.sampled_from(allocation_ids).flatmap(
            lambda allocation_id: operation.as_strategy(path_parameters={"id": allocation_id})
        )

    @GENERATED
    @given(case=cases)
    def run(case: Case) -> None:
        send_and_check(case, base_url, session)

    run()


def aimed_at_allocation(case_and_id: tuple[Case, str]) -> Case:
    """The inference ``case`` with its body's ``allocation_id`` replaced by a real one."""
    case, allocation_id = case_and_id
    assert isinstance(case.body, dict)
    case.body = {**case.body, "allocation_id": allocation_id}
    return case


def test_linked_calls_get_documented_answers(base_url: str, session: requests.Session) -> None:
    """Follow the spec's links: allocate, then get, renew, infer on and release that allocation."""

    class LinkedCalls(SCHEMA.as_state_machine()):  # type: ignore[misc]
        def get_call_kwargs(self, case: Case) -> dict[str, Any]:
            return {"base_url": base_url, "session": session, "headers": AUTH}

        def validate_response(
            self, response: schemathesis.Response, case: Case, **kwargs: Any
        ) -> None:
            assert_not_a_server_error(response)
            case.validate_response(response, checks=CHECKS, headers=AUTH)

    LinkedCalls.run(
        settings=settings(
            max_examples=10,
            stateful_step_count=6,
            deadline=None,
            derandomize=True,
            database=None,
            suppress_health_check=list(HealthCheck),
            phases=[hypothesis.Phase.generate],
        )
    )
