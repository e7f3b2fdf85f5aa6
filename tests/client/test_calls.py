"""Every plain call on both clients against the emulator: what is sent, what comes back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import attrs
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, ManualClock
from tests.client._support import ClientFactory, call
from tests.conftest import EmulatorFactory

MODEL = "gemma-3-270m"


def last_request_id(emu: Emulator) -> str:
    return emu.exchanges[-1].response_headers["x-request-id"]


async def test_create_allocation_returns_a_frozen_allocation_with_its_request_id(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(emulator)
    alloc = await call(client, "create_allocation", model=MODEL, gpus=2)
    assert isinstance(alloc, harpoon.Allocation)
    assert (alloc.model, alloc.gpu_count, alloc.pool_id) == (MODEL, 2, "gpu-pool-1")
    assert alloc.status is harpoon.AllocationStatus.READY
    assert alloc.gpu_type == "nvidia-h100-80gb"
    assert alloc.endpoint is not None
    assert alloc.created_at.tzinfo is not None
    assert alloc.ttl_seconds == 600
    assert alloc.request_id == last_request_id(emulator)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        alloc.status = harpoon.AllocationStatus.RELEASED  # type: ignore[misc]
    assert [a.id for a in emulator.live_allocations()] == [alloc.id]


async def test_create_allocation_sends_the_body_the_contract_asks_for(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(emulator)
    await call(
        client,
        "create_allocation",
        model=MODEL,
        gpus=1,
        gpu_type="nvidia-h100-80gb",
        pool_id="gpu-pool-1",
        ttl=timedelta(seconds=90.5),
    )
    body = json.loads(emulator.exchanges[0].request_body)
    assert body == {
        "model": MODEL,
        "gpu_count": 1,
        "gpu_type": "nvidia-h100-80gb",
        "pool_id": "gpu-pool-1",
        "ttl_seconds": 91,
    }


async def test_create_allocation_uses_the_clients_pool_unless_told_otherwise(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = make_emulator(pools={"gpu-pool-1": 8, "gpu-pool-2": 4})
    client = make_client(emu, pool_id="gpu-pool-2")
    first = await call(client, "create_allocation", model=MODEL)
    second = await call(client, "create_allocation", model=MODEL, pool_id="gpu-pool-1")
    assert (first.pool_id, second.pool_id) == ("gpu-pool-2", "gpu-pool-1")


async def test_without_any_pool_the_body_names_none_and_the_server_default_applies(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = make_emulator(pools={"gpu-pool-1": 8, "gpu-pool-2": 4})
    client = make_client(emu)
    alloc = await call(client, "create_allocation", model=MODEL)
    assert "pool_id" not in json.loads(emu.exchanges[0].request_body)
    assert alloc.pool_id == "gpu-pool-1"


async def test_each_create_allocation_call_sends_its_own_idempotency_key(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(emulator)
    await call(client, "create_allocation", model=MODEL)
    await call(client, "create_allocation", model=MODEL)
    keys = [e.idempotency_key for e in emulator.exchanges]
    assert None not in keys
    assert len(set(keys)) == 2
    assert len(emulator.live_allocations()) == 2


async def test_a_given_idempotency_key_is_sent_and_a_replay_returns_the_same_allocation(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(emulator)
    first = await call(client, "create_allocation", model=MODEL, idempotency_key="order-42")
    again = await call(client, "create_allocation", model=MODEL, idempotency_key="order-42")
    assert [e.idempotency_key for e in emulator.exchanges] == ["order-42", "order-42"]
    assert again.id == first.id
    assert again.request_id != first.request_id
    assert len(emulator.live_allocations()) == 1


async def test_get_allocation_reads_it_back(emulator: Emulator, make_client: ClientFactory) -> None:
    client = make_client(emulator)
    alloc = await call(client, "create_allocation", model=MODEL)
    again = await call(client, "get_allocation", alloc.id)
    assert again == alloc
    assert again.request_id == last_request_id(emulator) != alloc.request_id
    assert emulator.exchanges[-1].method == "GET"
    assert emulator.exchanges[-1].path == f"/v1/allocate/{alloc.id}"


async def test_list_allocations_lists_the_live_ones_optionally_of_one_pool(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = make_emulator(pools={"gpu-pool-1": 8, "gpu-pool-2": 4})
    client = make_client(emu)
    one = await call(client, "create_allocation", model=MODEL)
    two = await call(client, "create_allocation", model=MODEL, pool_id="gpu-pool-2")
    everything = await call(client, "list_allocations")
    assert [a.id for a in everything] == [one.id, two.id]
    assert all(a.request_id == last_request_id(emu) for a in everything)
    only_two = await call(client, "list_allocations", pool_id="gpu-pool-2")
    assert [a.id for a in only_two] == [two.id]
    assert emu.exchanges[-1].query == "pool_id=gpu-pool-2"


async def test_renew_allocation_moves_the_expiry_later(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    clock = ManualClock()
    emu = make_emulator(clock=clock)
    client = make_client(emu)
    alloc = await call(client, "create_allocation", model=MODEL, ttl=60)
    clock.advance(30)
    renewed = await call(client, "renew_allocation", alloc.id)
    assert renewed.expires_at == alloc.expires_at + timedelta(seconds=30)
    longer = await call(client, "renew_allocation", alloc.id, ttl=timedelta(minutes=5))
    assert longer.expires_at == datetime.fromtimestamp(clock.now(), UTC) + timedelta(minutes=5)
    assert [json.loads(e.request_body) for e in emu.exchanges[1:]] == [{}, {"ttl_seconds": 300}]


@pytest.mark.parametrize("ttl", [0, -5, float("nan"), True])
async def test_a_ttl_that_is_not_a_positive_duration_is_refused_before_sending(
    emulator: Emulator, make_client: ClientFactory, ttl: float
) -> None:
    client = make_client(emulator)
    with pytest.raises(harpoon.ConfigurationError, match="ttl"):
        await call(client, "create_allocation", model=MODEL, ttl=ttl)
    assert emulator.exchanges == []


async def test_release_allocation_frees_the_gpus(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(emulator)
    alloc = await call(client, "create_allocation", model=MODEL)
    assert await call(client, "release_allocation", alloc.id) is None
    assert emulator.live_allocations() == []
    assert emulator.exchanges[-1].method == "DELETE"


async def test_releasing_twice_is_fine(emulator: Emulator, make_client: ClientFactory) -> None:
    client = make_client(emulator)
    alloc = await call(client, "create_allocation", model=MODEL)
    await call(client, "release_allocation", alloc.id)
    await call(client, "release_allocation", alloc.id)
    assert [e.status for e in emulator.exchanges[1:]] == [204, 204]


async def test_a_404_on_release_counts_as_released(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(emulator)
    assert await call(client, "release_allocation", "alloc_000000000000000000000000") is None
    assert [e.status for e in emulator.exchanges] == [404]


async def test_infer_returns_the_result_with_its_usage_and_latency(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(emulator)
    alloc = await call(client, "create_allocation", model=MODEL)
    result = await call(client, "infer", allocation_id=alloc.id, prompt="Hello", max_tokens=5)
    assert isinstance(result, harpoon.InferenceResult)
    assert result.allocation_id == alloc.id
    assert result.model == MODEL
    assert result.finish_reason in ("stop", "length")
    assert len(result.text.split()) == result.usage.output_tokens <= 5
    assert result.usage.total_tokens == result.usage.input_tokens + result.usage.output_tokens
    wire = json.loads(emulator.exchanges[-1].response_body)
    assert result.latency == pytest.approx(wire["latency_ms"] / 1000)
    assert result.request_id == last_request_id(emulator)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        result.text = "changed"  # type: ignore[misc]


async def test_infer_sends_only_the_fields_given_and_no_idempotency_key(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(emulator)
    alloc = await call(client, "create_allocation", model=MODEL)
    await call(client, "infer", allocation_id=alloc.id, prompt="Hi")
    await call(
        client,
        "infer",
        allocation_id=alloc.id,
        prompt="Hi",
        model=MODEL,
        max_tokens=7,
        temperature=0.5,
        stop=["."],
    )
    plain, full = emulator.exchanges[1:]
    assert json.loads(plain.request_body) == {"allocation_id": alloc.id, "prompt": "Hi"}
    assert json.loads(full.request_body) == {
        "allocation_id": alloc.id,
        "prompt": "Hi",
        "model": MODEL,
        "max_tokens": 7,
        "temperature": 0.5,
        "stop": ["."],
    }
    assert plain.idempotency_key is None
    assert plain.request_headers["content-type"] == "application/json"


async def test_list_pools_puts_the_default_pool_first(
    make_emulator: EmulatorFactory, make_client: ClientFactory
) -> None:
    emu = make_emulator(pools={"gpu-pool-1": 8, "gpu-pool-2": 4})
    client = make_client(emu)
    pools = await call(client, "list_pools")
    assert [(p.id, p.gpus_total, p.default) for p in pools] == [
        ("gpu-pool-1", 8, True),
        ("gpu-pool-2", 4, False),
    ]
    assert pools[0].models == ("gemma-3-270m", "qwen3-30b-a3b")
    assert pools[0].request_id == last_request_id(emu)


async def test_get_pool_shows_the_free_gpus_now(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(emulator)
    await call(client, "create_allocation", model=MODEL, gpus=3)
    pool = await call(client, "get_pool", "gpu-pool-1")
    assert isinstance(pool, harpoon.Pool)
    assert (pool.id, pool.gpus_total, pool.gpus_free, pool.default) == ("gpu-pool-1", 8, 5, True)
    assert pool.request_id == last_request_id(emulator)


async def test_health_reports_status_and_version(
    emulator: Emulator, make_client: ClientFactory
) -> None:
    client = make_client(emulator)
    health = await call(client, "health")
    assert isinstance(health, harpoon.Health)
    assert health.status == "ok"
    assert health.version.endswith("+emulator")
    assert health.request_id == last_request_id(emulator)
    emulator.set_health("degraded")
    assert (await call(client, "health")).status == "degraded"
