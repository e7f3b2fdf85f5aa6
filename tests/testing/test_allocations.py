"""Pools, capacity, readiness, TTL, release and idempotency."""

from __future__ import annotations

import httpx
import pytest

from hostedai_harpoon.testing import AllocationStatus, Emulator, ManualClock, PoolSpec
from tests.conftest import EmulatorFactory

from .conftest import AUTH, allocate


def test_default_emulator_has_one_default_pool_serving_both_models(client: httpx.Client) -> None:
    pools = client.get("/v1/pools").json()["data"]
    assert pools == [
        {
            "id": "gpu-pool-1",
            "gpu_type": "nvidia-h100-80gb",
            "gpus_total": 8,
            "gpus_free": 8,
            "models": ["gemma-3-270m", "qwen3-30b-a3b"],
            "default": True,
        }
    ]


def test_first_pool_given_is_the_default_and_listed_first(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(pools=[PoolSpec("b", 2, models=["gemma-3-270m"]), PoolSpec("a", 4)])
    with emu.http_client(headers=AUTH) as http:
        assert [(p["id"], p["default"]) for p in http.get("/v1/pools").json()["data"]] == [
            ("b", True),
            ("a", False),
        ]
        created = allocate(http).json()
        assert created["pool_id"] == "b"
        assert allocate(http, "qwen3-30b-a3b").json()["error"]["code"] == "unknown_model"
        assert http.get("/v1/pools/a").json()["gpus_total"] == 4
        assert http.get("/v1/pools/zzz").json()["error"]["code"] == "pool_not_found"


def test_allocation_is_created_ready_with_endpoint_and_default_ttl(
    make_emulator: EmulatorFactory, clock: ManualClock
) -> None:
    emu = make_emulator(clock=clock)
    with emu.http_client(headers=AUTH) as http:
        response = allocate(http)
    body = response.json()
    assert response.status_code == 201
    assert body["id"].startswith("alloc_")
    assert len(body["id"]) == 30
    assert body["status"] == "ready"
    assert body["endpoint"] == f"https://emulator.invalid/endpoints/{body['id']}"
    assert body["created_at"] == "2026-01-01T00:00:00.000Z"
    assert body["expires_at"] == "2026-01-01T00:10:00.000Z"
    assert body["ttl_seconds"] == 600


def test_null_ttl_means_no_expiry(make_emulator: EmulatorFactory, clock: ManualClock) -> None:
    emu = make_emulator(clock=clock)
    with emu.http_client(headers=AUTH) as http:
        body = allocate(http, ttl_seconds=None).json()
        clock.advance(10**6)
        assert http.get(f"/v1/allocate/{body['id']}").json()["status"] == "ready"
    assert body["expires_at"] is None
    assert body["ttl_seconds"] is None


def test_full_pool_answers_503_with_retry_after_until_a_release(
    make_emulator: EmulatorFactory,
) -> None:
    emu = make_emulator(pools={"p": 4}, capacity_retry_after=7)
    with emu.http_client(headers=AUTH) as http:
        first = allocate(http, gpu_count=3).json()
        refused = allocate(http, gpu_count=2)
        assert refused.status_code == 503
        assert refused.headers["retry-after"] == "7"
        assert refused.json()["error"]["code"] == "capacity_exhausted"
        assert refused.json()["error"]["type"] == "capacity_error"
        assert http.get("/v1/pools/p").json()["gpus_free"] == 1
        assert http.delete(f"/v1/allocate/{first['id']}").status_code == 204
        assert http.get("/v1/pools/p").json()["gpus_free"] == 4
        assert allocate(http, gpu_count=2).status_code == 201


@pytest.mark.parametrize(
    ("held", "asked", "message"),
    [
        (3, 2, "Pool 'p' cannot take the allocation: it needs 2 GPUs, 1 free."),
        (4, 1, "Pool 'p' cannot take the allocation: it needs 1 GPU, 0 free."),
    ],
)
def test_a_full_pool_says_how_many_gpus_were_asked_for_and_how_many_are_free(
    make_emulator: EmulatorFactory, held: int, asked: int, message: str
) -> None:
    emu = make_emulator(pools={"p": 4})
    with emu.http_client(headers=AUTH) as http:
        assert allocate(http, gpu_count=held).status_code == 201
        refused = allocate(http, gpu_count=asked)

    assert refused.json()["error"]["message"] == message


def test_gpu_count_above_pool_size_is_422_not_503(client: httpx.Client) -> None:
    assert allocate(client, gpu_count=9).json()["error"]["code"] == "exceeds_pool_size"


def test_gpu_type_must_match_the_pool(client: httpx.Client) -> None:
    assert allocate(client, gpu_type="nvidia-h100-80gb").status_code == 201
    assert allocate(client, gpu_type="amd-mi300x").json()["error"]["code"] == "gpu_type_unavailable"


def test_set_capacity_shrinks_a_pool(emulator: Emulator, client: httpx.Client) -> None:
    emulator.set_capacity("gpu-pool-1", 1)
    assert allocate(client).status_code == 201
    assert allocate(client).status_code == 503
    assert emulator.pools()[0].gpus_free == 0


def test_allocation_is_pending_until_the_ready_delay_passes(
    make_emulator: EmulatorFactory, clock: ManualClock
) -> None:
    emu = make_emulator(clock=clock, ready_delay=5)
    with emu.http_client(headers=AUTH) as http:
        body = allocate(http).json()
        assert (body["status"], body["endpoint"]) == ("pending", None)
        infer = http.post("/v1/inference", json={"allocation_id": body["id"], "prompt": "hi"})
        assert infer.status_code == 409
        assert infer.json()["error"]["code"] == "allocation_not_ready"
        clock.advance(4.9)
        assert http.get(f"/v1/allocate/{body['id']}").json()["status"] == "pending"
        clock.advance(0.1)
        ready = http.get(f"/v1/allocate/{body['id']}").json()
    assert ready["status"] == "ready"
    assert ready["endpoint"] is not None


def test_pool_ready_delay_overrides_the_emulator_default(
    make_emulator: EmulatorFactory, clock: ManualClock
) -> None:
    emu = make_emulator(pools=[PoolSpec("slow", ready_delay=30)], clock=clock, ready_delay=1)
    with emu.http_client(headers=AUTH) as http:
        alloc_id = allocate(http).json()["id"]
        clock.advance(10)
        assert http.get(f"/v1/allocate/{alloc_id}").json()["status"] == "pending"


def test_ttl_expiry_frees_gpus_and_renewal_is_then_gone(
    make_emulator: EmulatorFactory, clock: ManualClock
) -> None:
    emu = make_emulator(clock=clock, pools={"p": 2})
    with emu.http_client(headers=AUTH) as http:
        alloc_id = allocate(http, gpu_count=2, ttl_seconds=60).json()["id"]
        clock.advance(59)
        assert http.get("/v1/pools/p").json()["gpus_free"] == 0
        clock.advance(1)
        assert http.get(f"/v1/allocate/{alloc_id}").json()["status"] == "expired"
        assert http.get("/v1/pools/p").json()["gpus_free"] == 2
        renew = http.post(f"/v1/allocate/{alloc_id}/renew", json={})
        assert renew.status_code == 410
        assert renew.json()["error"]["code"] == "allocation_expired"
        assert http.get("/v1/allocate").json() == {"data": []}
        assert http.delete(f"/v1/allocate/{alloc_id}").status_code == 204
    assert emu.live_allocations() == []


def test_expiry_is_swept_without_any_request(
    make_emulator: EmulatorFactory, clock: ManualClock
) -> None:
    emu = make_emulator(clock=clock)
    with emu.http_client(headers=AUTH) as http:
        allocate(http, ttl_seconds=10)
    clock.advance(10)
    assert emu.live_allocations() == []
    assert emu.allocations()[0].status is AllocationStatus.EXPIRED


def test_renew_pushes_expiry_from_now(make_emulator: EmulatorFactory, clock: ManualClock) -> None:
    emu = make_emulator(clock=clock)
    with emu.http_client(headers=AUTH) as http:
        alloc_id = allocate(http, ttl_seconds=60).json()["id"]
        clock.advance(50)
        renewed = http.post(f"/v1/allocate/{alloc_id}/renew")
        assert renewed.status_code == 200
        assert renewed.json()["expires_at"] == "2026-01-01T00:01:50.000Z"
        clock.advance(50)
        longer = http.post(f"/v1/allocate/{alloc_id}/renew", json={"ttl_seconds": 3600}).json()
        assert longer["expires_at"] == "2026-01-01T01:01:40.000Z"
        assert longer["ttl_seconds"] == 3600
        assert longer["status"] == "ready"


def test_release_is_idempotent_and_renew_after_release_is_gone(client: httpx.Client) -> None:
    alloc_id = allocate(client).json()["id"]
    assert client.delete(f"/v1/allocate/{alloc_id}").status_code == 204
    assert client.delete(f"/v1/allocate/{alloc_id}").status_code == 204
    assert client.get(f"/v1/allocate/{alloc_id}").json()["status"] == "released"
    assert client.post(f"/v1/allocate/{alloc_id}/renew").json()["error"]["code"] == (
        "allocation_released"
    )
    assert client.delete("/v1/allocate/alloc_unknown").status_code == 404


def test_list_shows_live_allocations_oldest_first_filtered_by_pool(
    make_emulator: EmulatorFactory,
) -> None:
    emu = make_emulator(pools={"a": 4, "b": 4})
    with emu.http_client(headers=AUTH) as http:
        first = allocate(http).json()["id"]
        second = allocate(http, pool_id="b").json()["id"]
        third = allocate(http).json()["id"]
        http.delete(f"/v1/allocate/{third}")
        assert [a["id"] for a in http.get("/v1/allocate").json()["data"]] == [first, second]
        by_pool = http.get("/v1/allocate", params={"pool_id": "b"}).json()["data"]
        assert [a["id"] for a in by_pool] == [second]
        assert http.get("/v1/allocate", params={"pool_id": "nope"}).json() == {"data": []}
    assert [a.id for a in emu.live_allocations()] == [first, second]


def test_fail_next_allocations_reports_pending_then_failed(
    emulator: Emulator, client: httpx.Client
) -> None:
    emulator.fail_next_allocations(1)
    doomed = allocate(client).json()
    assert doomed["status"] == "pending"
    assert client.get(f"/v1/allocate/{doomed['id']}").json()["status"] == "failed"
    kept = allocate(client).json()
    assert kept["status"] == "ready"
    live = emulator.live_allocations()
    assert doomed["id"] not in [a.id for a in live]
    assert [a.id for a in live] == [kept["id"]]
    assert emulator.get(doomed["id"]).status is AllocationStatus.FAILED
    client.delete(f"/v1/allocate/{kept['id']}")
    [pool] = emulator.pools()
    assert pool.gpus_free == pool.gpus_total


def test_failed_allocation_frees_gpus_and_inference_is_gone(
    make_emulator: EmulatorFactory, clock: ManualClock
) -> None:
    emu = make_emulator(pools={"p": 1}, clock=clock, ready_delay=2)
    emu.failure_rate = 1.0
    with emu.http_client(headers=AUTH) as http:
        alloc_id = allocate(http).json()["id"]
        assert http.get("/v1/pools/p").json()["gpus_free"] == 0
        clock.advance(2)
        assert http.get(f"/v1/allocate/{alloc_id}").json()["status"] == "failed"
        assert http.get("/v1/pools/p").json()["gpus_free"] == 1
        gone = http.post("/v1/inference", json={"allocation_id": alloc_id, "prompt": "x"})
    assert (gone.status_code, gone.json()["error"]["code"]) == (410, "allocation_failed")


def test_fail_and_expire_hooks_free_gpus(emulator: Emulator, client: httpx.Client) -> None:
    first = allocate(client, gpu_count=4).json()["id"]
    second = allocate(client, gpu_count=4).json()["id"]
    assert emulator.fail_allocation(first).status is AllocationStatus.FAILED
    assert emulator.expire_allocation(second).status is AllocationStatus.EXPIRED
    assert emulator.pools()[0].gpus_free == 8
    assert client.get(f"/v1/allocate/{second}").json()["status"] == "expired"
    with pytest.raises(KeyError):
        emulator.fail_allocation("alloc_nope")
    with pytest.raises(KeyError):
        emulator.get("alloc_nope")


def test_idempotent_replay_returns_the_same_allocation(
    emulator: Emulator, client: httpx.Client
) -> None:
    key = {"Idempotency-Key": "order-1"}
    first = client.post("/v1/allocate", json={"model": "gemma-3-270m", "gpu_count": 2}, headers=key)
    replay = client.post(
        "/v1/allocate",
        content=b'{ "gpu_count" : 2,\n "model": "gemma-3-270m", "extra": true }',
        headers=key,
    )
    assert first.status_code == replay.status_code == 201
    assert "idempotent-replayed" not in first.headers
    assert replay.headers["idempotent-replayed"] == "true"
    assert replay.json()["id"] == first.json()["id"]
    assert emulator.created_by_key() == {"order-1": [first.json()["id"]]}
    assert len(emulator.live_allocations()) == 1


def test_replay_applies_defaults_before_comparing(client: httpx.Client) -> None:
    key = {"Idempotency-Key": "k"}
    first = client.post("/v1/allocate", json={"model": "gemma-3-270m"}, headers=key).json()
    explicit = {
        "model": "gemma-3-270m",
        "gpu_count": 1,
        "pool_id": "gpu-pool-1",
        "ttl_seconds": 600,
    }
    assert client.post("/v1/allocate", json=explicit, headers=key).json()["id"] == first["id"]


def test_replay_shows_the_current_state(client: httpx.Client) -> None:
    key = {"Idempotency-Key": "k"}
    alloc_id = client.post("/v1/allocate", json={"model": "gemma-3-270m"}, headers=key).json()["id"]
    client.delete(f"/v1/allocate/{alloc_id}")
    replay = client.post("/v1/allocate", json={"model": "gemma-3-270m"}, headers=key).json()
    assert (replay["id"], replay["status"]) == (alloc_id, "released")


def test_same_key_other_body_is_a_conflict(emulator: Emulator, client: httpx.Client) -> None:
    key = {"Idempotency-Key": "order-2"}
    client.post("/v1/allocate", json={"model": "gemma-3-270m"}, headers=key)
    conflict = client.post("/v1/allocate", json={"model": "qwen3-30b-a3b"}, headers=key)
    assert conflict.status_code == 409
    assert conflict.json()["error"] == {
        "type": "conflict_error",
        "code": "idempotency_conflict",
        "message": conflict.json()["error"]["message"],
        "request_id": conflict.headers["x-request-id"],
    }
    assert len(emulator.live_allocations()) == 1


def test_a_refused_request_does_not_bind_its_key(make_emulator: EmulatorFactory) -> None:
    emu = make_emulator(pools={"p": 1})
    key = {"Idempotency-Key": "retry-me"}
    with emu.http_client(headers=AUTH) as http:
        blocker = allocate(http).json()["id"]
        assert (
            http.post("/v1/allocate", json={"model": "gemma-3-270m"}, headers=key).status_code
            == 503
        )
        assert http.post("/v1/allocate", json={"model": "nope"}, headers=key).status_code == 422
        http.delete(f"/v1/allocate/{blocker}")
        created = http.post("/v1/allocate", json={"model": "gemma-3-270m"}, headers=key)
        assert created.status_code == 201
        assert "idempotent-replayed" not in created.headers
    assert emu.created_by_key() == {"retry-me": [created.json()["id"]]}


@pytest.mark.parametrize("key", ["", "x" * 256, "tab\tkey", "ключ"])
def test_bad_idempotency_keys_are_rejected(client: httpx.Client, key: str) -> None:
    response = client.post(
        "/v1/allocate",
        json={"model": "gemma-3-270m"},
        headers={b"Idempotency-Key": key.encode()},
    )
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "invalid_idempotency_key"


def test_reset_forgets_everything(emulator: Emulator, client: httpx.Client) -> None:
    client.post("/v1/allocate", json={"model": "gemma-3-270m"}, headers={"Idempotency-Key": "k"})
    emulator.set_capacity("gpu-pool-1", 2)
    emulator.reset()
    assert emulator.allocations() == []
    assert emulator.exchanges == []
    assert emulator.created_by_key() == {}
    assert emulator.pools()[0].gpus_total == 8
