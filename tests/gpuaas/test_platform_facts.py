"""The platform's facts (issue #18, read from the reference application's source) that the
gpuaas dialect must honour: its error texts, its paginated list of every team's rows, its
no-capacity refusals (fail over to the next pool), where the key goes, ids as numbers."""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, GpuaasQuirks

KEY = "gpuaas-facts-key-0123456789"
TEAM = "team-1"
SUBSCRIBE = "/api/gpuaas/pool/subscribe"


def client(emu: Emulator, ledger: Path, **options: object) -> harpoon.HostedAI:
    options.setdefault("team_id", TEAM)
    return harpoon.HostedAI(
        "https://emulator.local", KEY, dialect="gpuaas", ledger_dir=ledger,
        http_client=emu.http_client(), **options,  # type: ignore[arg-type]
    )  # fmt: skip


def answering(status: int, content: bytes, ledger: Path) -> harpoon.HostedAI:
    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=content)

    http = httpx.Client(transport=httpx.MockTransport(answer))
    return harpoon.HostedAI(
        "https://emulator.local", KEY, dialect="gpuaas", team_id=TEAM, ledger_dir=ledger,
        http_client=http, max_retries=0,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("status", "content", "error", "says"),
    [
        # The reference application fails over on any of these texts, whatever the status.
        (500, b"Insufficient resources", harpoon.CapacityError, "Insufficient resources"),
        (400, b'{"message": "Failed to validate subscription resources"}',
         harpoon.CapacityError, "Failed to validate"),
        (500, b'{"error": "code 10189007: no room"}', harpoon.CapacityError, "10189007"),
        # It reads "Already subscribed" as the 409 whatever the status.
        (400, b'{"message": "Already subscribed to this pool"}', harpoon.ConflictError,
         "Already subscribed"),
        (422, b'{"errors": ["vgpus must be at least 1"]}', harpoon.UnprocessableEntityError,
         "vgpus must be at least 1"),
        (502, b"<html><body>Bad gateway</body></html>", harpoon.InternalServerError, "HTTP 502"),
    ],
)  # fmt: skip
def test_the_platforms_error_texts_are_read_as_the_reference_application_reads_them(
    tmp_path: Path, status: int, content: bytes, error: type[Exception], says: str
) -> None:
    with answering(status, content, tmp_path) as c, pytest.raises(error) as caught:
        c.list_pools()
    assert says in str(caught.value)
    assert KEY not in repr(caught.value) + str(caught.value)


def test_pool_label_names_a_pool_over_pool_name(tmp_path: Path) -> None:
    pools = [{"id": 7, "pool_name": "raw-7", "pool_label": "H100 (EU)", "available_vgpus": 2}]
    with answering(200, json.dumps(pools).encode(), tmp_path) as c:
        [pool] = c.list_pools()
    assert (pool.id, pool.gpu_type, pool.gpus_free) == ("7", "H100 (EU)", 2)


def test_a_no_capacity_refusal_of_a_pool_chosen_by_default_passes_to_the_next(
    tmp_path: Path,
) -> None:
    emu = Emulator(dialect="gpuaas", gpuaas=GpuaasQuirks(full_pools=(101,)))
    with client(emu, tmp_path) as c:
        with c.allocate("gemma-3-270m", capacity_timeout=0) as lease:
            assert lease.allocation is not None
            assert lease.allocation.pool_id == "102"
        pools = [json.loads(e.request_body)["pool_id"] for e in emu.requests_to("POST", SUBSCRIBE)]
        assert pools == [101, 102]
        # A pool the user named is not swapped for another: the lease waits it out.
        with (
            pytest.raises(harpoon.AllocationError, match="no capacity"),
            c.allocate("gemma-3-270m", pool_id="101", capacity_timeout=0),
        ):
            pass
    assert emu.live_allocations() == []


def test_the_teams_rows_past_the_first_page_are_listed_and_waited_for(tmp_path: Path) -> None:
    # 150 rows of another team come first: this team's subscription is on the second page.
    quirks = GpuaasQuirks(other_teams=150, unsubscribe_delay=0.2)
    emu = Emulator(dialect="gpuaas", pools={"101": 100, "102": 100}, gpuaas=quirks)
    with client(emu, tmp_path, pool_id="102") as c:
        with c.allocate("gemma-3-270m") as lease:
            assert [a.id for a in c.list_allocations()] == [lease.id]
        assert emu.live_allocations() == []  # the release waited until it had left
        assert c.orphans() == []
        assert c.list_allocations() == []
    pages = {e.query for e in emu.requests_to("GET", "/api/gpuaas/pool-subscription")}
    assert f"team_id={TEAM}&page=1&per_page=100" in pages
    assert emu.foreign_touches == 0


def test_rows_whose_team_id_is_a_number_are_this_teams_when_the_number_is_its_id(
    tmp_path: Path,
) -> None:
    emu = Emulator(dialect="gpuaas", gpuaas=GpuaasQuirks(other_teams=3))  # team 9001, a number
    with client(emu, tmp_path / "a") as other, client(emu, tmp_path / "b", team_id="9001") as c:
        assert other.list_allocations() == []
        assert len(c.list_allocations()) == 3


@pytest.mark.parametrize("how", ["argument", "environment"])
def test_the_key_goes_as_a_bearer_token_when_auth_header_says_authorization(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    emu = Emulator(dialect="gpuaas", api_keys=[KEY])
    if how == "environment":
        monkeypatch.setenv("HOSTED_AI_AUTH_HEADER", "Authorization")
        options = {}
    else:
        options = {"auth_header": "Authorization"}
    with client(emu, tmp_path, pool_id="101", **options) as c, c.allocate("gemma-3-270m"):
        pass
    for exchange in emu.exchanges:
        if exchange.path.startswith("/api/"):
            assert exchange.request_headers["authorization"] == "Bearer ***"
            assert "x-api-key" not in exchange.request_headers
    assert emu.live_allocations() == []
