"""The hostile-server tests run on both control-plane dialects where the attack is the same
(``tests/dialects.py``: a test that takes ``dialect`` runs on ``v1`` and ``gpuaas``);
``test_platform.py`` attacks what only the platform has."""

from __future__ import annotations

import pytest

from hostedai_harpoon._http import _clock
from tests.client._support import Waits
from tests.dialects import parametrize_dialects


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_dialects(metafunc)


@pytest.fixture
def waits(monkeypatch: pytest.MonkeyPatch) -> Waits:
    """Skip (and record) every wait of the SDK, moving its monotonic clock on instead."""
    recorder = Waits()
    monkeypatch.setattr(_clock, "sleep", recorder.sleep)
    monkeypatch.setattr(_clock, "async_sleep", recorder.async_sleep)
    monkeypatch.setattr(_clock, "monotonic", recorder.monotonic)
    return recorder
