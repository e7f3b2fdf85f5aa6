"""Fixtures for the OpenAI-compatible protocol: a standalone emulated server over TCP."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from hostedai_harpoon.testing import Emulator


@pytest.fixture
def openai_url(emulator: Emulator) -> Iterator[str]:
    """The root URL of the emulator's standalone OpenAI-compatible server, over TCP."""
    with emulator.serve_openai() as url:
        yield url
