"""Shared fixtures: emulators whose every response is checked against docs/openapi.yaml."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from hostedai_harpoon.testing import Emulator
from hostedai_harpoon.testing._openai import is_openai_path
from tests.client._support import Flavor
from tests.conformance import check_exchanges
from tests.dialects import PATHS, TEAM, Paths

EmulatorFactory = Callable[..., Emulator]

# The per-test limit of a test marked slow (a soak, a long property run), instead of the 60 s
# of pyproject.toml: generous, because a soak is bounded by its count of cycles and takes as
# long as that count takes on a loaded machine; the limit is only there to end a hang.
SLOW_TIMEOUT = 900


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give each slow test ``SLOW_TIMEOUT`` unless it names its own limit."""
    for item in items:
        if item.get_closest_marker("slow") and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(SLOW_TIMEOUT))


@pytest.fixture
def dialect() -> str:
    """The control plane's dialect: ``v1`` unless the directory runs both (tests/dialects.py)."""
    return "v1"


@pytest.fixture
def paths(dialect: str) -> Paths:
    """What each lease operation sends in ``dialect``."""
    return PATHS[dialect]


@pytest.fixture
def make_emulator(
    dialect: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> Iterator[EmulatorFactory]:
    """Build emulators of ``dialect``; at teardown every exchange they logged must conform to
    the spec (on ``gpuaas``: the pods' OpenAI-compatible answers, and no emulator crash).
    On ``gpuaas`` every client the test builds from then on is one of that dialect."""
    made: list[Emulator] = []
    if dialect == "gpuaas":
        monkeypatch.setenv("HOSTED_AI_DIALECT", "gpuaas")
        monkeypatch.setenv("HOSTED_AI_TEAM_ID", TEAM)
        monkeypatch.setenv("HOSTED_AI_LEDGER_DIR", str(tmp_path / "ledger"))

    def factory(**kwargs: Any) -> Emulator:
        emu = Emulator(dialect=dialect, **kwargs)
        made.append(emu)
        return emu

    yield factory
    for emu in made:
        exchanges = emu.exchanges
        if dialect == "gpuaas":  # the platform has no OpenAPI document to check against
            exchanges = [
                e for e in exchanges if e.fault == "emulator_bug" or is_openai_path(e.path)
            ]
        check_exchanges(exchanges)


@pytest.fixture
def emulator(make_emulator: EmulatorFactory) -> Emulator:
    """A default emulator: one pool ``gpu-pool-1`` of 8 GPUs serving both default models."""
    return make_emulator()


@pytest.fixture(params=["sync", "async"])
def flavor(request: pytest.FixtureRequest) -> Flavor:
    """Which client the scenario runs on."""
    value: Flavor = request.param
    return value
