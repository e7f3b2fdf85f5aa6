"""The Orchestrator and plain leases on a gpuaas client: allocated targets reach their pod
with the client's protocol, and ``max_lifetime`` bounds the warm pool's subscriptions."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, GpuaasQuirks

TEAM = "team-1"


def gpuaas_client(emu: Emulator, ledger: Path) -> harpoon.AsyncHostedAI:
    return harpoon.AsyncHostedAI(
        "http://127.0.0.1:8080",
        "gpuaas-key",
        dialect="gpuaas",
        team_id=TEAM,
        ledger_dir=ledger,
        http_client=emu.async_http_client(),
    )


async def test_a_lease_left_unsaid_uses_the_dialects_protocol(tmp_path: Path) -> None:
    emu = Emulator(dialect="gpuaas")
    async with gpuaas_client(emu, tmp_path) as client:
        assert client.inference == "openai"
        async with client.allocate("gemma-3-270m") as lease:
            assert lease.inference == "openai"
            assert (await lease.infer("hi")).text
    assert emu.live_allocations() == []


async def test_the_default_targets_are_reached_with_openai_on_gpuaas(tmp_path: Path) -> None:
    emu = Emulator(dialect="gpuaas")
    async with (
        gpuaas_client(emu, tmp_path) as client,
        harpoon.Orchestrator(client) as orchestrator,
    ):
        assert {t.inference for t in orchestrator.targets} == {None}  # the client's, then
        for target in ("gemma-3-270m", "qwen3-30b-a3b"):
            routed = await orchestrator.infer("hello", target=target)
            assert routed.result.text
        assert emu.requests_to("POST", "/v1/chat/completions")
    assert emu.live_allocations() == []
    assert emu.foreign_touches == 0


def test_a_target_saying_hostedai_on_gpuaas_is_a_configuration_error(tmp_path: Path) -> None:
    emu = Emulator(dialect="gpuaas")
    target = harpoon.Target("small", tier="small", model="gemma-3-270m", inference="hostedai")
    client = gpuaas_client(emu, tmp_path)
    with pytest.raises(harpoon.ConfigurationError, match=r"\['small'\].*inference='hostedai'"):
        harpoon.Orchestrator(client, targets=[target])


async def test_a_target_saying_nothing_leases_with_v1s_own_on_a_v1_client() -> None:
    target = harpoon.Target("small", tier="small", model="gemma-3-270m")
    assert target.inference is None
    emu = Emulator()
    client = harpoon.AsyncHostedAI(
        "http://127.0.0.1:8080", "k", http_client=emu.async_http_client()
    )
    async with client, harpoon.Orchestrator(client, targets=[target]) as orchestrator:
        assert orchestrator.targets == (target,)  # the user's own, for their policies
        assert (await orchestrator.infer("hi")).result.text
    assert len(emu.requests_to("POST", "/v1/inference")) == 1


@pytest.mark.parametrize("value", [0, -1, "1", float("nan")])
def test_a_bad_max_lifetime_is_named(value: object) -> None:
    client = harpoon.AsyncHostedAI("http://127.0.0.1:8080", "k")
    with pytest.raises(harpoon.ConfigurationError, match="max_lifetime"):
        harpoon.Orchestrator(client, max_lifetime=value)  # type: ignore[arg-type]


async def test_max_lifetime_releases_the_warm_pools_subscriptions(tmp_path: Path) -> None:
    emu = Emulator(dialect="gpuaas")
    async with (
        gpuaas_client(emu, tmp_path) as client,
        harpoon.Orchestrator(client, max_lifetime=0.2, idle_release=3600) as orchestrator,
    ):
        first = await orchestrator.infer("hello", target="gemma-3-270m")
        assert len(emu.live_allocations()) == 1
        for _ in range(500):  # the lease releases itself after 0.2 s, not the idle release
            if not emu.live_allocations():
                break
            await asyncio.sleep(0.01)
        assert emu.live_allocations() == []
        again = await orchestrator.infer("hello again", target="gemma-3-270m")
        assert again.result.allocation_id != first.result.allocation_id
    assert emu.live_allocations() == []
    assert len(emu.requests_to("POST", "/api/gpuaas/pool/subscribe")) == 2


async def test_leases_naming_no_pool_take_pools_the_team_does_not_hold_yet(
    tmp_path: Path,
) -> None:
    emu = Emulator(dialect="gpuaas")
    async with gpuaas_client(emu, tmp_path) as client:
        first, second = client.allocate("gemma-3-270m"), client.allocate("gemma-3-270m")
        async with first as a, second as b:
            assert a.allocation is not None
            assert b.allocation is not None
            assert a.allocation.pool_id != b.allocation.pool_id
            assert len(emu.live_allocations()) == 2
    assert emu.live_allocations() == []


async def test_a_409_answering_a_subscribe_that_worked_adopts_it(tmp_path: Path) -> None:
    emu = Emulator(dialect="gpuaas", gpuaas=GpuaasQuirks(conflict_rate=1.0))
    client = gpuaas_client(emu, tmp_path)
    async with client, client.allocate("gemma-3-270m", pool_id="102") as lease:
        assert [s.id for s in emu.live_allocations()] == [lease.id]
    assert emu.live_allocations() == []
