"""Which subscription a subscribe made is told without comparing clocks: the team's rows are
listed before the subscribe is sent, and a row listed then is never taken for its own. With
the platform's clock minutes ahead of the client's or behind it, a subscribe that worked but
whose answer was lost, empty or a 409 is adopted exactly once, and a row the client did not
make is never adopted (nor released)."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, Fault, FaultPlan, GpuaasQuirks

KEY = "gpuaas-skew-key-0123456789"
TEAM = "team-1"
SUBSCRIBE = "/api/gpuaas/pool/subscribe"
UNSUBSCRIBE = "/api/gpuaas/pool/unsubscribe"
SKEWS = pytest.mark.parametrize("skew", [300.0, -300.0], ids=["ahead", "behind"])


def client(emu: Emulator, ledger: Path, **options: object) -> harpoon.HostedAI:
    return harpoon.HostedAI(
        "https://emulator.local", KEY, dialect="gpuaas", team_id=TEAM, ledger_dir=ledger,
        http_client=emu.http_client(), **options,  # type: ignore[arg-type]
    )  # fmt: skip


def unsubscribed(emu: Emulator) -> list[str]:
    """The subscription ids the unsubscribes named."""
    return [
        str(json.loads(e.request_body)["subscription_id"])
        for e in emu.requests_to("POST", UNSUBSCRIBE)
    ]


@SKEWS
def test_a_subscribe_that_timed_out_but_worked_is_adopted_exactly_once(
    tmp_path: Path, skew: float
) -> None:
    quirks = GpuaasQuirks(lost_subscribe_rate=1.0, lost_subscribe_delay=1.0, clock_skew=skew)
    emu = Emulator(dialect="gpuaas", gpuaas=quirks)
    with emu.serve() as url, harpoon.HostedAI(
        url, KEY, dialect="gpuaas", team_id=TEAM, ledger_dir=tmp_path, timeout=0.3
    ) as c:  # fmt: skip
        with c.allocate("gemma-3-270m", pool_id="102") as lease:
            assert [s.id for s in emu.live_allocations()] == [lease.id]
            assert lease.infer("hi").text
        assert c.orphans() == []
        assert c.reconcile() == []
    assert len(emu.allocations()) == 1  # one subscription, whatever was sent again (409s)
    assert emu.live_allocations() == []
    assert unsubscribed(emu) == [lease.id]


@SKEWS
@pytest.mark.parametrize("answer", ["empty", "409"])
def test_an_empty_or_409_answer_to_a_subscribe_that_worked_is_adopted_once(
    tmp_path: Path, skew: float, answer: str
) -> None:
    rate = {"empty_subscribe_rate": 1.0} if answer == "empty" else {"conflict_rate": 1.0}
    emu = Emulator(dialect="gpuaas", gpuaas=GpuaasQuirks(clock_skew=skew, **rate))  # type: ignore[arg-type]
    with client(emu, tmp_path, pool_id="101") as c:
        for _ in range(3):
            with c.allocate("gemma-3-270m") as lease:
                assert [s.id for s in emu.live_allocations()] == [lease.id]
        assert c.orphans() == []
    assert len(emu.requests_to("POST", SUBSCRIBE)) == len(emu.allocations()) == 3
    assert emu.live_allocations() == []


@SKEWS
def test_a_409_about_a_row_listed_before_the_subscribe_is_never_adopted(
    tmp_path: Path, skew: float
) -> None:
    emu = Emulator(dialect="gpuaas", gpuaas=GpuaasQuirks(clock_skew=skew))
    theirs = client(emu, tmp_path / "theirs", pool_id="101")
    ours = client(emu, tmp_path / "ours", pool_id="101")
    with theirs, ours, theirs.allocate("gemma-3-270m") as held:
        with (
            pytest.raises(harpoon.ConflictError, match=f"subscription {held.id} of team"),
            ours.allocate("gemma-3-270m", capacity_timeout=0),
        ):
            pass
        assert ours.reconcile() == []
        assert unsubscribed(emu) == []
        assert [s.id for s in emu.live_allocations()] == [held.id]


@SKEWS
def test_a_lost_answer_is_never_taken_for_a_row_listed_before_the_subscribe(
    tmp_path: Path, skew: float
) -> None:
    # Ours is refused 409 (theirs holds the pool), and that answer comes too late.
    late = FaultPlan(rules=[Fault("latency", method="POST", path=SUBSCRIBE, delay=1.0)])
    emu = Emulator(dialect="gpuaas", gpuaas=GpuaasQuirks(clock_skew=skew))
    with emu.serve() as url:
        theirs = client(emu, tmp_path / "theirs", pool_id="101")
        ours = harpoon.HostedAI(
            url, KEY, dialect="gpuaas", team_id=TEAM, ledger_dir=tmp_path / "ours",
            pool_id="101", timeout=0.3,
        )  # fmt: skip
        with theirs, ours:
            with theirs.allocate("gemma-3-270m") as held:
                emu.faults = late
                with (
                    pytest.raises(harpoon.APITimeoutError),
                    ours.allocate("gemma-3-270m", capacity_timeout=0),
                ):
                    pass
                emu.faults = None
                assert ours.reconcile() == []
                assert unsubscribed(emu) == []
                assert [s.id for s in emu.live_allocations()] == [held.id]
            assert unsubscribed(emu) == [held.id]  # theirs released it; ours never named it
    assert emu.live_allocations() == []


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait(timeout=30)
    return child.pid


@SKEWS
def test_reconcile_matches_a_dead_subscribe_to_the_row_it_made_not_to_one_listed_before(
    tmp_path: Path, skew: float
) -> None:
    emu = Emulator(dialect="gpuaas", gpuaas=GpuaasQuirks(clock_skew=skew))
    theirs = client(emu, tmp_path / "theirs", pool_id="101")
    with theirs, theirs.allocate("gemma-3-270m") as held:
        with client(emu, tmp_path / "ours") as maker:
            made = maker.create_allocation("gemma-3-270m", pool_id="102")
        # As a process killed before either subscribe's answer came would leave its ledger:
        [path] = (tmp_path / "ours").glob("gpuaas-*.json")
        dead, now = _dead_pid(), datetime.now(UTC).isoformat()
        path.write_text(
            json.dumps(
                {
                    "owned": {},
                    "pending": {
                        "a": {"pool_id": "102", "at": now, "pid": dead, "before": []},
                        "b": {"pool_id": "101", "at": now, "pid": dead, "before": [held.id]},
                    },
                }
            )
        )
        with client(emu, tmp_path / "ours") as ours:
            assert ours.reconcile() == [made.id]
        assert unsubscribed(emu) == [made.id]
        assert [s.id for s in emu.live_allocations()] == [held.id]
    assert json.loads(path.read_text()) == {"owned": {}, "pending": {}}
