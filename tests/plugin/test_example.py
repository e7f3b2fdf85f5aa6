"""``examples/testing_your_app.py``: its own tests pass with the plugin, and it runs as a script."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "examples"


def _env_without_the_service() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("HOSTED_AI_")}


def test_the_examples_tests_pass_with_the_plugin_and_no_conftest() -> None:
    # pytest-asyncio's default (strict) mode, as in a project that never configured it.
    assert not (EXAMPLES / "conftest.py").exists()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "-o",
            "asyncio_mode=strict",
            "test_testing_your_app.py",
        ],
        cwd=EXAMPLES,
        capture_output=True,
        text=True,
        timeout=50,
        env=_env_without_the_service(),
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert re.search(r"\b9 passed\b", done.stdout), done.stdout


def test_the_example_runs_against_the_embedded_emulator() -> None:
    done = subprocess.run(
        [sys.executable, str(EXAMPLES / "testing_your_app.py")],
        capture_output=True,
        text=True,
        timeout=30,
        env=_env_without_the_service(),
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("against the embedded emulator")
    assert sum(line.startswith("  -> ") for line in lines) == 2
