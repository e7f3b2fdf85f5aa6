"""Shared fixtures: emulators whose every response is checked against docs/openapi.yaml."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from hostedai_harpoon.testing import Emulator
from tests.client._support import Flavor
from tests.conformance import check_exchanges

EmulatorFactory = Callable[..., Emulator]


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
