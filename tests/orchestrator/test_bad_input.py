"""Bad arguments get a ConfigurationError naming them; reprs never show the API key."""

from __future__ import annotations

from typing import Any

import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator
from tests.orchestrator.conftest import API_KEY

pytestmark = pytest.mark.timeout(30)


def client(emu: Emulator) -> harpoon.AsyncHostedAI:
    return harpoon.AsyncHostedAI(
        "http://127.0.0.1:8080", API_KEY, http_client=emu.async_http_client()
    )


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"targets": []}, "targets"),
        ({"targets": "gemma-3-270m"}, "targets"),
        ({"targets": [harpoon.DEFAULT_TARGETS[0]] * 2}, "unique"),
        ({"targets": ["no-such-model"]}, "names of the default targets"),
        ({"targets": [harpoon.DEFAULT_TARGETS[0], "gemma-3-270m"]}, "unique"),
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 1.5}, "max_attempts"),
        ({"idle_release": -1}, "idle_release"),
        ({"queue_timeout": "soon"}, "queue_timeout"),
        ({"drain_timeout": float("nan")}, "drain_timeout"),
        ({"capacity_timeout": -0.5}, "capacity_timeout"),
        ({"max_allocations": 0}, "max_allocations"),
        ({"max_allocations": {"nope": 1}}, "unknown targets"),
        ({"min_warm": {"gemma-3-270m": -1}}, "min_warm"),
        ({"min_warm": {"nope": 1}}, "unknown targets"),
    ],
)
def test_bad_orchestrator_options_are_configuration_errors(
    emulator: Emulator, options: dict[str, Any], named: str
) -> None:
    with pytest.raises(harpoon.ConfigurationError, match=named):
        harpoon.Orchestrator(client(emulator), **options)


async def test_bad_call_arguments_are_configuration_errors(emulator: Emulator) -> None:
    async with harpoon.Orchestrator(client(emulator)) as orch:
        with pytest.raises(harpoon.ConfigurationError, match="max_tokens"):
            await orch.process("Hi", max_tokens=0)
        with pytest.raises(harpoon.ConfigurationError, match=r"^text must be a string"):
            await orch.process(42)  # type: ignore[arg-type]
        with pytest.raises(harpoon.ConfigurationError, match="unknown target"):
            await orch.process("Hi", target="nope")
        with pytest.raises(harpoon.ConfigurationError, match="tier"):
            await orch.process("Hi", tier="huge")
        with pytest.raises(harpoon.ConfigurationError, match="unknown target"):
            orch.allocate(targets=["nope"])
        with pytest.raises(harpoon.ConfigurationError, match="unknown target"):
            orch.allocate(prewarm=["nope"])
        with pytest.raises(harpoon.ConfigurationError, match="budget"):
            orch.allocate(budget=-1.0)
        with pytest.raises(harpoon.ConfigurationError, match="max_allocations"):
            orch.allocate(max_allocations={"gemma-3-270m": 0})
        session = orch.allocate()
        with pytest.raises(harpoon.UsageError, match="async with"):
            await session.infer("not entered")
    assert emulator.live_allocations() == []


async def test_a_session_limited_to_some_targets_routes_only_over_them(
    emulator: Emulator,
) -> None:
    async with (
        harpoon.Orchestrator(client(emulator)) as orch,
        orch.allocate(targets=["qwen3-30b-a3b"]) as session,
    ):
        routed = await session.infer("Hi!")  # simple: the small tier, were it allowed
        assert routed.target.name == "qwen3-30b-a3b"
        with pytest.raises(harpoon.ConfigurationError, match="unknown target"):
            await session.infer("Hi!", target="gemma-3-270m")


async def test_reprs_never_show_the_api_key(emulator: Emulator) -> None:
    async with harpoon.Orchestrator(client(emulator)) as orch, orch.allocate() as session:
        await session.infer("Hi!")
        texts = [repr(orch), repr(session), repr(orch.snapshot()), repr(await orch.health())]
    assert all(API_KEY not in text for text in texts)
    assert "Orchestrator open" in texts[0]


def test_the_default_targets_can_be_named(emulator: Emulator) -> None:
    orchestrator = harpoon.Orchestrator(client(emulator), targets=["qwen3-30b-a3b"])
    assert list(orchestrator.snapshot().targets) == ["qwen3-30b-a3b"]


def test_a_sync_client_is_refused_with_the_fix_named(emulator: Emulator) -> None:
    sync = harpoon.HostedAI("http://127.0.0.1:8080", API_KEY, http_client=emulator.http_client())
    with pytest.raises(harpoon.UsageError, match="AsyncHostedAI"):
        harpoon.Orchestrator(sync)  # type: ignore[arg-type]
