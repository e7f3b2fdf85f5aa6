"""The request log, the leak detector, thread safety and the import surface."""

from __future__ import annotations

import subprocess
import sys
import threading

import httpx

from hostedai_harpoon.testing import Emulator

from .conftest import AUTH


def test_exchange_log_records_requests_and_answers(
    emulator: Emulator, client: httpx.Client
) -> None:
    created = client.post(
        "/v1/allocate",
        json={"model": "gemma-3-270m"},
        headers={"Idempotency-Key": "k-1"},
    )
    client.get("/v1/allocate", params={"pool_id": "gpu-pool-1"})
    first, second = emulator.exchanges
    assert (first.method, first.path, first.status) == ("POST", "/v1/allocate", 201)
    assert first.request_headers["authorization"] == "Bearer ***"
    assert first.request_body == created.request.content
    assert first.response_body == created.content
    assert first.response_headers["x-request-id"] == created.headers["x-request-id"]
    assert first.request_id == created.headers["x-request-id"]
    assert (first.idempotency_key, first.allocation_id) == ("k-1", created.json()["id"])
    assert first.fault is None
    assert (second.query, second.allocation_id, second.idempotency_key) == (
        "pool_id=gpu-pool-1",
        None,
        None,
    )


def test_replays_are_logged_without_creating(emulator: Emulator, client: httpx.Client) -> None:
    for _ in range(3):
        client.post(
            "/v1/allocate", json={"model": "gemma-3-270m"}, headers={"Idempotency-Key": "k"}
        )
    assert [e.allocation_id is not None for e in emulator.exchanges] == [True, False, False]
    assert len(emulator.created_by_key()["k"]) == 1


def test_requests_to_filters_by_method_and_path_glob(
    emulator: Emulator, client: httpx.Client
) -> None:
    alloc_id = client.post("/v1/allocate", json={"model": "gemma-3-270m"}).json()["id"]
    client.get(f"/v1/allocate/{alloc_id}")
    client.post(f"/v1/allocate/{alloc_id}/renew")
    client.delete(f"/v1/allocate/{alloc_id}")
    assert len(emulator.requests_to("post", "/v1/allocate")) == 1
    assert len(emulator.requests_to("POST", "/v1/allocate*")) == 2
    assert len(emulator.requests_to(path="/v1/allocate/*")) == 3
    assert [e.status for e in emulator.requests_to("DELETE")] == [204]


def test_live_allocations_is_the_leak_detector(emulator: Emulator, client: httpx.Client) -> None:
    ids = [
        client.post("/v1/allocate", json={"model": "gemma-3-270m"}).json()["id"] for _ in range(3)
    ]
    client.delete(f"/v1/allocate/{ids[1]}")
    assert [a.id for a in emulator.live_allocations()] == [ids[0], ids[2]]
    assert len(emulator.allocations()) == 3
    assert emulator.get(ids[1]).status == "released"


def test_concurrent_allocations_never_exceed_capacity(emulator: Emulator) -> None:
    statuses: list[int] = []

    def grab() -> None:
        with emulator.http_client(headers=AUTH) as http:
            response = http.post("/v1/allocate", json={"model": "gemma-3-270m"})
            statuses.append(response.status_code)

    threads = [threading.Thread(target=grab) for _ in range(24)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert sorted(statuses) == [201] * 8 + [503] * 16
    assert emulator.pools()[0].gpus_free == 0
    assert len({e.request_id for e in emulator.exchanges}) == 24


def test_importing_the_emulator_does_not_import_uvicorn() -> None:
    code = "import sys, hostedai_harpoon.testing; print('uvicorn' in sys.modules)"
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True
    )
    assert result.stdout.strip() == "False"
