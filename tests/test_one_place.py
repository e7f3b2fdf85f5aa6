"""One place per decision: changing the one place changes every path that makes it."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon._http._drivers import AsyncDriver
from hostedai_harpoon._leases._core import LeaseCore
from hostedai_harpoon.routing import _route
from hostedai_harpoon.testing import Emulator


def test_route_asks_why_not_about_every_target(monkeypatch: pytest.MonkeyPatch) -> None:
    def why_not(state: harpoon.TargetState, *_: object) -> str | None:
        return "ruled out here" if state.target.tier is harpoon.Tier.SMALL else None

    monkeypatch.setattr(_route, "_why_not", why_not)
    decision = harpoon.route(
        harpoon.ComplexityPolicy(), harpoon.RouteRequest("Hi"), harpoon.DEFAULT_TARGETS
    )
    assert decision.target.tier is harpoon.Tier.LARGE
    assert "ruled out here" in decision.reason


async def test_every_async_attempt_goes_through_the_drivers_send(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    sent: list[str] = []
    send = AsyncDriver.send

    async def counted(self: AsyncDriver, step: Any) -> Any:
        sent.append(step.request.url.path)
        return await send(self, step)

    monkeypatch.setattr(AsyncDriver, "send", counted)
    emu = Emulator()
    client = harpoon.AsyncHostedAI(
        "http://127.0.0.1:8080", "k", http_client=emu.async_http_client()
    )
    await client.health()
    assert sent == ["/v1/health"]


@pytest.mark.parametrize("flavor", ["sync", "async"])
async def test_a_lease_inference_is_work_on_the_allocation(
    monkeypatch: pytest.MonkeyPatch, flavor: str
) -> None:
    worked: list[object] = []
    work = LeaseCore._work

    def counted(self: LeaseCore[Any, Any], call: Any, planner: Any = None) -> Any:
        worked.append(call.path)
        return work(self, call, planner)

    monkeypatch.setattr(LeaseCore, "_work", counted)
    emu = Emulator()
    if flavor == "sync":
        client = harpoon.HostedAI("http://127.0.0.1:8080", "k", http_client=emu.http_client())
        with client.allocate("gemma-3-270m") as lease:
            lease.infer("Hi")
    else:
        aclient = harpoon.AsyncHostedAI(
            "http://127.0.0.1:8080", "k", http_client=emu.async_http_client()
        )
        async with aclient.allocate("gemma-3-270m") as alease:
            await alease.infer("Hi")
    assert worked == ["/v1/inference"]


def _definitions(name: str) -> list[str]:
    """The modules of the package that define ``name`` at their top level."""
    found = []
    for path in sorted(Path(harpoon.__file__).parent.rglob("*.py")):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.FunctionDef | ast.ClassDef):
                defined = [node.name]
            elif isinstance(node, ast.Assign):
                defined = [t.id for t in node.targets if isinstance(t, ast.Name)]
            else:
                continue
            if name in defined:
                found.append(path.name)
    return found


@pytest.mark.parametrize(
    ("name", "places"),
    [
        ("GONE", 0),  # a set of statuses and a tuple of errors: GONE_STATUSES, GONE_ERRORS
        ("GONE_STATUSES", 1),
        ("GONE_ERRORS", 1),
        ("Outcome", 1),  # the orchestrator's verdict on a call; SendOutcome, testing's Answer
        ("check_seconds", 1),  # one argument order: (value, name)
        ("Plan", 0),  # it was Flow under another name
    ],
)
def test_each_name_means_one_thing(name: str, places: int) -> None:
    assert len(_definitions(name)) == places, _definitions(name)
