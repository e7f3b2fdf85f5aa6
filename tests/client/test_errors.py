"""Each error status maps to its class, carrying status_code, code, request_id and body."""

from __future__ import annotations

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, Fault, FaultPlan
from tests.client._support import ClientFactory, call, mock_client
from tests.conftest import EmulatorFactory

MODEL = "gemma-3-270m"

# Every status the contract names, and one it does not, with the class each must raise.
STATUS_CLASSES: list[tuple[int, str | None, type[harpoon.APIStatusError]]] = [
    (400, "invalid_json", harpoon.BadRequestError),
    (401, "invalid_api_key", harpoon.AuthenticationError),
    (403, "forbidden", harpoon.PermissionDeniedError),
    (404, "allocation_not_found", harpoon.NotFoundError),
    (405, "method_not_allowed", harpoon.APIStatusError),
    (409, "allocation_not_ready", harpoon.ConflictError),
    (410, "allocation_released", harpoon.GoneError),
    (418, None, harpoon.APIStatusError),
    (422, "validation_error", harpoon.UnprocessableEntityError),
    (429, "rate_limited", harpoon.RateLimitError),
    (500, "internal_error", harpoon.InternalServerError),
    (502, "bad_gateway", harpoon.InternalServerError),
    (503, "service_unavailable", harpoon.InternalServerError),
    (503, "capacity_exhausted", harpoon.CapacityError),
    (504, "gateway_timeout", harpoon.InternalServerError),
    (599, None, harpoon.InternalServerError),
]


def envelope(code: str | None, request_id: str = "req_envelope") -> dict[str, object]:
    return {
        "error": {
            "type": "some_error",
            "code": code,
            "message": f"the {code} message",
            "request_id": request_id,
        }
    }


@pytest.mark.parametrize(("status", "code", "cls"), STATUS_CLASSES)
def test_each_status_maps_to_its_error_class(
    status: int, code: str | None, cls: type[harpoon.APIStatusError]
) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, json=envelope(code), headers={"x-request-id": "req_header"})

    client = mock_client(handler, max_retries=0)
    with pytest.raises(harpoon.APIStatusError) as caught:
        client.get_pool("gpu-pool-1")
    error = caught.value
    assert type(error) is cls
    assert error.status_code == status
    assert error.code == code
    assert error.request_id == "req_header"
    assert error.body == envelope(code)
    assert error.message == f"the {code} message"
    assert str(status) in str(error)
    assert "req_header" in str(error)


def test_the_request_id_falls_back_to_the_envelopes() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404, json=envelope("pool_not_found", "req_from_body"))

    client = mock_client(handler)
    with pytest.raises(harpoon.NotFoundError) as caught:
        client.get_pool("nope")
    assert caught.value.request_id == "req_from_body"


@pytest.mark.parametrize("body", [b"<html>Bad Gateway</html>", b"", b'{"error": "flat"}', b"[1]"])
def test_an_error_without_a_readable_envelope_still_maps_by_status(body: bytes) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(409, content=body, headers={"x-request-id": "req_x"})

    client = mock_client(handler)
    with pytest.raises(harpoon.ConflictError) as caught:
        client.get_pool("gpu-pool-1")
    error = caught.value
    assert (error.status_code, error.code, error.request_id) == (409, None, "req_x")
    assert error.message == "HTTP 409 Conflict"


async def test_an_unknown_key_is_an_authentication_error(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = make_emulator(api_keys={"the-only-good-key"})
    client = make_client(emu)
    with pytest.raises(harpoon.AuthenticationError) as caught:
        await call(client, "list_pools")
    assert (caught.value.status_code, caught.value.code) == (401, "invalid_api_key")
    assert caught.value.request_id == emu.exchanges[0].request_id


async def test_an_unknown_allocation_is_not_found(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(emulator)
    with pytest.raises(harpoon.NotFoundError) as caught:
        await call(client, "get_allocation", "alloc_000000000000000000000000")
    error = caught.value
    assert (error.status_code, error.code) == (404, "allocation_not_found")
    assert error.request_id == emulator.exchanges[0].request_id
    assert isinstance(error.body, dict)
    assert error.body["error"]["request_id"] == error.request_id


async def test_an_unknown_pool_is_not_found(emulator: Emulator, make_client: ClientFactory) -> None:
    client = make_client(emulator)
    with pytest.raises(harpoon.NotFoundError, match="pool") as caught:
        await call(client, "get_pool", "gpu-pool-404")
    assert caught.value.code == "pool_not_found"


async def test_inference_on_a_pending_allocation_is_a_conflict(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = make_emulator(ready_delay=60)
    client = make_client(emu)
    alloc = await call(client, "create_allocation", model=MODEL)
    assert alloc.status is harpoon.AllocationStatus.PENDING
    with pytest.raises(harpoon.ConflictError) as caught:
        await call(client, "infer", allocation_id=alloc.id, prompt="hi")
    assert caught.value.code == "allocation_not_ready"


async def test_reusing_an_idempotency_key_for_another_body_is_a_conflict(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(emulator)
    await call(client, "create_allocation", model=MODEL, idempotency_key="k-1")
    with pytest.raises(harpoon.ConflictError) as caught:
        await call(client, "create_allocation", model=MODEL, gpus=2, idempotency_key="k-1")
    assert caught.value.code == "idempotency_conflict"


async def test_renewing_a_released_allocation_is_gone(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(emulator)
    alloc = await call(client, "create_allocation", model=MODEL)
    await call(client, "release_allocation", alloc.id)
    with pytest.raises(harpoon.GoneError) as caught:
        await call(client, "renew_allocation", alloc.id)
    assert caught.value.code == "allocation_released"
    emulator_alloc = await call(client, "create_allocation", model=MODEL)
    emulator.expire_allocation(emulator_alloc.id)
    with pytest.raises(harpoon.GoneError, match="expired"):
        await call(client, "infer", allocation_id=emulator_alloc.id, prompt="hi")


async def test_an_unserved_model_is_unprocessable(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(emulator)
    with pytest.raises(harpoon.UnprocessableEntityError) as caught:
        await call(client, "create_allocation", model="gpt-imaginary")
    assert caught.value.code == "unknown_model"


async def test_a_full_pool_raises_capacity_error_with_retry_after(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = make_emulator(capacity_retry_after=7)
    client = make_client(emu, max_retries=0)
    await call(client, "create_allocation", model=MODEL, gpus=8)
    with pytest.raises(harpoon.CapacityError) as caught:
        await call(client, "create_allocation", model=MODEL, gpus=1)
    error = caught.value
    assert (error.status_code, error.code, error.retry_after) == (503, "capacity_exhausted", 7.0)
    assert isinstance(error, harpoon.APIStatusError)


@pytest.mark.parametrize(
    ("fault", "cls", "code"),
    [
        (Fault("rate_limit", retry_after=5), harpoon.RateLimitError, "rate_limited"),
        (Fault("error", status=500), harpoon.InternalServerError, "internal_error"),
        (Fault("error", status=502), harpoon.InternalServerError, "bad_gateway"),
        (Fault("error", status=503), harpoon.InternalServerError, "service_unavailable"),
        (Fault("error", status=504), harpoon.InternalServerError, "gateway_timeout"),
    ],
)
async def test_injected_server_errors_map_to_their_classes(
    make_emulator: EmulatorFactory,
    make_client: ClientFactory,
    fault: Fault,
    cls: type[harpoon.APIStatusError],
    code: str,
) -> None:
    emu = make_emulator(faults=FaultPlan(rules=[fault]))
    client = make_client(emu, max_retries=0)
    with pytest.raises(harpoon.APIStatusError) as caught:
        await call(client, "health")
    assert type(caught.value) is cls
    assert caught.value.code == code
    assert caught.value.request_id == emu.exchanges[0].request_id


async def test_a_dropped_connection_is_a_connection_error(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = make_emulator(faults=FaultPlan(rules=[Fault("drop")]))
    client = make_client(emu, max_retries=0)
    with pytest.raises(harpoon.APIConnectionError) as caught:
        await call(client, "health")
    assert type(caught.value) is harpoon.APIConnectionError
    assert isinstance(caught.value.__cause__, httpx.RemoteProtocolError)


async def test_a_slow_answer_is_a_timeout_error(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = make_emulator(faults=FaultPlan(rules=[Fault("latency", delay=5.0)]))
    client = make_client(emu, max_retries=0, timeout=0.02)
    with pytest.raises(harpoon.APITimeoutError) as caught:
        await call(client, "health")
    assert isinstance(caught.value, harpoon.APIConnectionError)
