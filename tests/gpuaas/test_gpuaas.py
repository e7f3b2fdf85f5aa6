"""The gpuaas dialect (hosted·ai's platform): leases are subscriptions, released on every way
out; other teams' rows are never touched; the platform's envelopes are typed errors."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Literal

import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, Fault, FaultPlan, GpuaasQuirks

KEY = "gpuaas-test-key-0123456789"
TEAM = "team-1"


def client(emu: Emulator, ledger: Path, **options: object) -> harpoon.HostedAI:
    return harpoon.HostedAI(
        "https://emulator.local",
        KEY,
        dialect="gpuaas",
        team_id=TEAM,
        ledger_dir=ledger,
        http_client=emu.http_client(),
        **options,  # type: ignore[arg-type]
    )


def test_a_lease_is_a_subscription_released_on_exit(tmp_path: Path) -> None:
    emu = Emulator(dialect="gpuaas", gpuaas=GpuaasQuirks(unsubscribe_delay=0.05))
    with (
        client(emu, tmp_path, pool_id="101") as c,
        c.allocate("gemma-3-270m", inference="openai") as lease,
    ):
        assert [s.id for s in emu.live_allocations()] == [lease.id]
        assert lease.infer("hello").text
    assert emu.live_allocations() == []
    paths = [e.path for e in emu.exchanges]
    assert paths[:4] == [
        "/api/gpuaas/pool-subscription",  # what the subscribe did not make
        "/api/gpuaas/pool/subscribe",
        "/api/gpuaas/connection-info",
        "/api/pods/expose-service",
    ]
    assert "/api/gpuaas/pool/unsubscribe" in paths
    subscribe = emu.exchanges[1]
    assert subscribe.request_headers["x-api-key"] == "***"
    assert "authorization" not in subscribe.request_headers
    assert json.loads(subscribe.request_body)["pool_id"] == 101


def test_another_teams_rows_are_never_shown_adopted_or_released(tmp_path: Path) -> None:
    emu = Emulator(dialect="gpuaas", gpuaas=GpuaasQuirks(other_teams=4, empty_subscribe_rate=0.5))
    with client(emu, tmp_path) as c:
        for pool in ("101", "102", "103", "104", "101"):
            with c.allocate("gemma-3-270m", pool_id=pool, inference="openai") as lease:
                assert lease.infer("hi").text
        assert c.list_allocations() == []
        assert c.reconcile() == []
        foreign = next(iter(emu._gpuaas.subscriptions))  # type: ignore[union-attr]
        with pytest.raises(harpoon.NotFoundError):
            c.get_allocation(str(foreign))
        c.release_allocation(str(foreign))  # not this team's: nothing is sent for it
    assert emu.foreign_touches == 0
    assert len(emu._gpuaas.live()) == 4  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("status", "payload", "error"),
    [
        (500, {"code": 12370004, "message": "no permissions"}, harpoon.InternalServerError),
        (200, {"code": 12370004, "message": "no permissions"}, harpoon.InternalServerError),
        (400, {"code": 10189007, "message": "Insufficient resources"}, harpoon.CapacityError),
        (500, {"message": "Insufficient resources"}, harpoon.CapacityError),
        (400, {"error": "bad pool"}, harpoon.BadRequestError),
        (422, {"errors": [{"field": "vgpus", "message": "bad"}]}, harpoon.UnprocessableEntityError),
        (200, None, harpoon.ResponseValidationError),
    ],
)
def test_the_platforms_envelopes_are_typed_errors(
    tmp_path: Path, status: int, payload: object, error: type[Exception]
) -> None:
    import httpx

    def answer(request: httpx.Request) -> httpx.Response:
        content = b"" if payload is None else json.dumps(payload).encode()
        return httpx.Response(status, content=content)

    http = httpx.Client(transport=httpx.MockTransport(answer))
    with harpoon.HostedAI(
        "https://emulator.local", KEY, dialect="gpuaas", team_id=TEAM, ledger_dir=tmp_path,
        http_client=http, max_retries=0,
    ) as c, pytest.raises(error) as caught:  # fmt: skip
        c.list_pools()
    assert KEY not in repr(caught.value) + str(caught.value)


def test_a_subscribe_that_timed_out_but_worked_is_adopted_once(tmp_path: Path) -> None:
    quirks = GpuaasQuirks(lost_subscribe_rate=1.0, lost_subscribe_delay=1.0)
    emu = Emulator(dialect="gpuaas", gpuaas=quirks)
    with emu.serve() as url, harpoon.HostedAI(
        url, KEY, dialect="gpuaas", team_id=TEAM, ledger_dir=tmp_path, timeout=0.3
    ) as c:  # fmt: skip
        with c.allocate("gemma-3-270m", pool_id="102", inference="openai") as lease:
            assert lease.infer("hi").text
            assert len(emu.live_allocations()) == 1
        assert emu.live_allocations() == []
    assert len(emu.allocations()) == 1  # one subscription, whatever was sent again
    # Sent again after the timeout: the repeat was answered 409, and that one adopted.
    statuses = [e.status for e in emu.requests_to("POST", "/api/gpuaas/pool/subscribe")]
    assert statuses[-1] == 409
    assert 409 not in statuses[:-1]


@pytest.mark.parametrize("when", ["before", "after"])
def test_a_subscribe_answered_5xx_is_sent_again_and_makes_one_subscription(
    tmp_path: Path, when: Literal["before", "after"]
) -> None:
    """There is no idempotency key, but one subscription per team and pool makes a repeat
    safe: "before" (nothing made) the repeat makes it; "after" (made) it is answered 409
    and that subscription is adopted."""
    fault = Fault("error", status=502, method="POST", path="/api/gpuaas/pool/subscribe",
                  times=1, when=when)  # fmt: skip
    emu = Emulator(dialect="gpuaas", faults=FaultPlan(rules=[fault]))
    with client(emu, tmp_path, pool_id="101") as c:
        with c.allocate("gemma-3-270m", inference="openai") as lease:
            assert lease.infer("hi").text
        assert c.orphans() == []
    assert len(emu.allocations()) == 1
    assert len(emu.requests_to("POST", "/api/gpuaas/pool/subscribe")) == 2
    assert emu.live_allocations() == []


def test_a_409_for_a_subscription_this_client_did_not_make_names_it(tmp_path: Path) -> None:
    emu = Emulator(dialect="gpuaas")
    theirs = client(emu, tmp_path / "theirs", pool_id="101")
    ours = client(emu, tmp_path / "ours", pool_id="101")
    with theirs.allocate("gemma-3-270m", inference="openai") as held:
        with (
            pytest.raises(harpoon.ConflictError) as caught,
            ours.allocate("gemma-3-270m", inference="openai", capacity_timeout=0),
        ):
            pass
        assert held.id in str(caught.value)
        assert [s.id for s in emu.live_allocations()] == [held.id]
    assert emu.live_allocations() == []


def test_a_lease_never_adopts_a_subscription_the_user_made_with_create_allocation(
    tmp_path: Path,
) -> None:
    emu = Emulator(dialect="gpuaas")
    with client(emu, tmp_path, pool_id="101") as ours:
        mine = ours.create_allocation("gemma-3-270m")  # in the user's hands, not a lease's
        with (
            pytest.raises(harpoon.ConflictError, match=mine.id),
            ours.allocate("gemma-3-270m", inference="openai", capacity_timeout=0),
        ):
            pytest.fail("the block must not run")
        assert [s.id for s in emu.live_allocations()] == [mine.id]  # still the user's
        ours.release_allocation(mine.id)
        with ours.allocate("gemma-3-270m", inference="openai") as lease:  # the pool is free
            assert lease.id != mine.id
    assert emu.live_allocations() == []


def test_max_lifetime_releases_the_subscription_itself(tmp_path: Path) -> None:
    emu = Emulator(dialect="gpuaas")
    with (
        client(emu, tmp_path, pool_id="103") as c,
        c.allocate("gemma-3-270m", inference="openai", max_lifetime=0.2) as lease,
    ):
        lease._keepalive.join(timeout=10)  # type: ignore[union-attr]
        assert emu.live_allocations() == []
        with pytest.raises(harpoon.AllocationError, match="max_lifetime"):
            lease.infer("too late")
    assert len(emu.requests_to("POST", "/api/gpuaas/pool/unsubscribe")) >= 1


def test_the_release_waits_until_the_row_is_gone(tmp_path: Path) -> None:
    emu = Emulator(dialect="gpuaas", gpuaas=GpuaasQuirks(unsubscribe_delay=0.3))
    with client(emu, tmp_path, pool_id="101") as c:
        with c.allocate("gemma-3-270m", inference="openai"):
            pass
        assert emu.live_allocations() == []  # not merely un_subscribing
        with c.allocate("gemma-3-270m", inference="openai"):  # the pool is free again
            pass


def test_the_async_twin_leases_and_releases_under_cancellation(tmp_path: Path) -> None:
    emu = Emulator(dialect="gpuaas", gpuaas=GpuaasQuirks(ready_delay=0.2))

    async def main() -> None:
        async with harpoon.AsyncHostedAI(
            "https://emulator.local", KEY, dialect="gpuaas", team_id=TEAM, ledger_dir=tmp_path,
            http_client=emu.async_http_client(),
        ) as c:  # fmt: skip

            async def hold() -> None:
                async with c.allocate("gemma-3-270m", pool_id="104", inference="openai"):
                    await asyncio.sleep(10)

            task = asyncio.create_task(hold())
            await asyncio.sleep(0.1)  # cancelled while waiting for the pod
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    assert emu.live_allocations() == []


def test_configuration_errors_name_the_argument(tmp_path: Path) -> None:
    with pytest.raises(harpoon.ConfigurationError, match="team_id"):
        harpoon.HostedAI("http://127.0.0.1:1", KEY, dialect="gpuaas")
    with pytest.raises(harpoon.ConfigurationError, match="dialect"):
        harpoon.HostedAI("http://127.0.0.1:1", KEY, dialect="v2")  # type: ignore[arg-type]
    with pytest.raises(harpoon.ConfigurationError, match="auth_header"):
        harpoon.HostedAI("http://127.0.0.1:1", KEY, auth_header="x-secret")
    c = harpoon.HostedAI(
        "http://127.0.0.1:1", KEY, dialect="gpuaas", team_id=TEAM, ledger_dir=tmp_path
    )
    with pytest.raises(harpoon.ConfigurationError, match="inference"):
        c.allocate("gemma-3-270m", inference="hostedai")
    assert KEY not in repr(c)


_HOLDER = textwrap.dedent(
    """
    import sys, time
    import hostedai_harpoon as harpoon
    client = harpoon.HostedAI()
    leases = [client.allocate("gemma-3-270m", pool_id=p, inference="openai")
              for p in ("101", "102", "103")]
    for lease in leases:
        lease.__enter__()
    print("holding", flush=True)
    time.sleep(60)
    """
)


_CLI = "import sys; from hostedai_harpoon.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.mark.timeout(120)
def test_reconcile_in_a_new_process_releases_what_a_killed_one_held(tmp_path: Path) -> None:
    emu = Emulator(dialect="gpuaas", gpuaas=GpuaasQuirks(other_teams=2))
    with emu.serve() as url:
        env = {
            **os.environ,
            "HOSTED_AI_BASE_URL": url,
            "HOSTED_AI_API_KEY": KEY,
            "HOSTED_AI_DIALECT": "gpuaas",
            "HOSTED_AI_TEAM_ID": TEAM,
            "HOSTED_AI_LEDGER_DIR": str(tmp_path),
        }
        holder = subprocess.Popen(
            [sys.executable, "-c", _HOLDER], env=env, stdout=subprocess.PIPE, text=True
        )
        try:
            assert holder.stdout is not None
            assert holder.stdout.readline() == "holding\n"
            assert len(emu.live_allocations()) == 3
        finally:
            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=30)
        assert len(emu.live_allocations()) == 3  # no server TTL: they stay, billing
        done = subprocess.run(
            [sys.executable, "-c", _CLI, "allocations", "reconcile", "--json"],
            env=env, capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert len(json.loads(done.stdout)["released"]) == 3
        assert emu.live_allocations() == []
        assert emu.foreign_touches == 0


def test_an_empty_list_while_waiting_for_the_release_is_asked_again_not_an_orphan(
    tmp_path: Path,
) -> None:
    quirks = GpuaasQuirks(unsubscribe_delay=0.05, empty_200_rate=0.5, seed=4)
    emu = Emulator(dialect="gpuaas", gpuaas=quirks)
    with client(emu, tmp_path, pool_id="101") as c:
        for _ in range(10):
            with c.allocate("gemma-3-270m", inference="openai"):
                pass
        assert c.orphans() == []
    assert emu.live_allocations() == []
