"""Shared fixtures: emulators whose every response is checked against docs/openapi.yaml."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hostedai_harpoon.testing import Emulator
from tests.client._support import Flavor
from tests.conformance import check_exchanges

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
def make_emulator() -> Iterator[EmulatorFactory]:
    """Build emulators; at teardown every exchange they logged must conform to the spec."""
    made: list[Emulator] = []

    def factory(**kwargs: Any) -> Emulator:
        emu = Emulator(**kwargs)
        made.append(emu)
        return emu

    yield factory
    for emu in made:
        check_exchanges(emu.exchanges)


@pytest.fixture
def emulator(make_emulator: EmulatorFactory) -> Emulator:
    """A default emulator: one pool ``gpu-pool-1`` of 8 GPUs serving both default models."""
    return make_emulator()


@pytest.fixture(params=["sync", "async"])
def flavor(request: pytest.FixtureRequest) -> Flavor:
    """Which client the scenario runs on."""
    value: Flavor = request.param
    return value
