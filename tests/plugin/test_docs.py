"""docs/testing.md: every test it shows passes as written, with the plugin and nothing else."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

TESTING_MD = Path(__file__).resolve().parents[2] / "docs" / "testing.md"


def python_blocks() -> list[str]:
    text = TESTING_MD.read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


# What each conftest the page shows does, checked in a directory of its own: a probe test.
CONFTEST_PROBES = {
    "def hostedai_faults": (
        "def test_plan(hostedai_emulator):\n"
        "    assert hostedai_emulator.faults.error_rate == 0.05\n",
        1,
    ),
    "def hostedai_dialect": (
        "def test_dialect(hostedai_dialect, hostedai_client, hostedai_emulator):\n"
        "    assert hostedai_client.dialect == hostedai_emulator.dialect == hostedai_dialect\n",
        2,  # once on each dialect
    ),
}


def test_the_tests_in_the_testing_page_pass(pytester: pytest.Pytester) -> None:
    blocks = python_blocks()
    tests = [block for block in blocks if "def test_" in block]
    conftests = [block for block in blocks if "def test_" not in block]
    for number, block in enumerate(tests):
        pytester.makepyfile(**{f"test_doc_{number}": block})
    probed = 0
    for number, conftest in enumerate(conftests):
        [(probe, runs)] = [probe for key, probe in CONFTEST_PROBES.items() if key in conftest]
        # A conftest override applies to a directory of its own.
        directory = pytester.mkpydir(f"overridden_{number}")
        (directory / "conftest.py").write_text(conftest, encoding="utf-8")
        (directory / "test_probe.py").write_text(probe, encoding="utf-8")
        probed += runs
    assert len(conftests) == len(CONFTEST_PROBES)
    result = pytester.runpytest_inprocess(
        "-p",
        "no:cacheprovider",
        "--strict-markers",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
    )
    expected = sum(len(re.findall(r"^(?:async )?def test_", block, re.M)) for block in tests)
    result.assert_outcomes(passed=expected + probed)
    assert expected >= 10


def test_the_page_names_every_fixture_of_the_plugin() -> None:
    from hostedai_harpoon import pytest_plugin

    text = TESTING_MD.read_text(encoding="utf-8")
    fixtures = [name for name in pytest_plugin.__all__ if name.startswith("hostedai_")]
    assert fixtures
    for name in fixtures:
        assert f"| `{name}` |" in text, name
