"""On hosted·ai's platform every text about a subscription speaks the platform's terms: the
subscription's id, its pool and its team; never an idempotency key (the platform has none)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.cli import main
from hostedai_harpoon.testing import Emulator, GpuaasQuirks

KEY = "gpuaas-texts-key-0123456789"
TEAM = "team-7"


def client(emu: Emulator, ledger: Path) -> harpoon.HostedAI:
    return harpoon.HostedAI(
        "https://emulator.local", KEY, dialect="gpuaas", team_id=TEAM, ledger_dir=ledger,
        http_client=emu.http_client(), pool_id="101",
    )  # fmt: skip


def test_an_unreleased_subscription_is_named_by_its_id_pool_and_team(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    emu = Emulator(dialect="gpuaas", gpuaas=GpuaasQuirks(unsubscribe_delay=30))
    with client(emu, tmp_path) as c:
        with (
            caplog.at_level(logging.WARNING, "hostedai_harpoon"),
            pytest.raises(harpoon.AllocationError) as caught,
            c.allocate("gemma-3-270m", release_timeout=0.2) as lease,
        ):
            held = lease.id
        [orphan] = c.orphans()
    named = f"subscription {held} to pool 101 of team {TEAM}"
    assert str(caught.value).startswith(f"could not release {named}: ")
    assert named in caplog.text
    assert (orphan.allocation_id, orphan.pool_id, orphan.team_id) == (held, "101", TEAM)
    assert (orphan.idempotency_key, orphan.ttl_seconds) == (None, None)
    for text in (str(caught.value), caplog.text, repr(orphan)):
        assert "idempotency key" not in text
        assert "harpoon-" not in text  # no key of the v1 API's shape, either


def test_a_subscription_past_its_lifetime_is_lost_as_a_subscription(tmp_path: Path) -> None:
    emu = Emulator(dialect="gpuaas")
    with client(emu, tmp_path) as c, c.allocate("gemma-3-270m", max_lifetime=0.1) as lease:
        lease._keepalive.join(timeout=10)  # type: ignore[union-attr]
        with pytest.raises(harpoon.AllocationError) as caught:
            lease.infer("too late")
    assert str(caught.value).startswith(f"subscription {lease.id} was lost: its max_lifetime")


def test_harpoon_allocations_speaks_of_the_teams_subscriptions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    emu = Emulator(dialect="gpuaas", gpuaas=GpuaasQuirks(other_teams=2))
    with emu.serve() as url:
        for name, value in {
            "HOSTED_AI_BASE_URL": url,
            "HOSTED_AI_API_KEY": KEY,
            "HOSTED_AI_DIALECT": "gpuaas",
            "HOSTED_AI_TEAM_ID": TEAM,
            "HOSTED_AI_LEDGER_DIR": str(tmp_path),
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.delenv("HOSTED_AI_POOL_ID", raising=False)
        assert main(["allocations", "list"]) == 0
        assert capsys.readouterr().out == f"no subscriptions of team {TEAM} hold GPUs\n"
        with harpoon.HostedAI() as c, c.allocate("gemma-3-270m", pool_id="102") as lease:
            assert main(["allocations", "list"]) == 0
            header, row = capsys.readouterr().out.splitlines()
            assert header.split() == ["SUBSCRIPTION", "POOL", "TEAM", "GPUS", "STATUS", "CREATED"]
            assert row.split()[:3] == [lease.id, "102", TEAM]
        assert main(["allocations", "release", "4242"]) == 1
        assert f"team {TEAM} has no subscription '4242'" in capsys.readouterr().err
        assert main(["allocations", "release", "--all"]) == 0
        assert capsys.readouterr().out == (
            f"nothing to release: no subscriptions of team {TEAM} hold GPUs\n"
        )
        assert main(["allocations", "reconcile"]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"nothing to release: no subscription of team {TEAM}")
    assert emu.foreign_touches == 0
