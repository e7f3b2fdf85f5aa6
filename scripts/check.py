"""Run every check CI runs: lint, format, types, import layers, the docs site, then the
whole test suite: the fast tests first, then the slow ones (soaks, long property runs;
``-m slow``).

Usage (inside the project's virtual environment): ``python scripts/check.py [pytest args]``
(the arguments go to both test runs).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

STEPS: list[tuple[str, list[str]]] = [
    ("ruff check", [sys.executable, "-m", "ruff", "check", "."]),
    ("ruff format --check", [sys.executable, "-m", "ruff", "format", "--check", "."]),
    ("mypy --strict", [sys.executable, "-m", "mypy"]),
    # The layer contracts of docs/architecture.md, in pyproject.toml's [tool.importlinter].
    ("lint-imports", [str(Path(sys.executable).with_name("lint-imports"))]),
]


def docs_step(site: str) -> tuple[str, list[str]]:
    """Build the docs site strictly (every warning an error) into ``site``."""
    command = [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "-d", site]
    return ("mkdocs build --strict", [*command, "-f", str(ROOT / "mkdocs.yml")])


# pytest's exit status when the selection holds no test (``check.py tests/cli`` has no slow one).
NO_TESTS_COLLECTED = 5


def suite_runs(pytest_args: list[str]) -> list[tuple[str, list[str]]]:
    """The suite in two runs: the fast tests, which fail in minutes when something is wrong,
    then the slow ones, each under the generous limit tests/conftest.py gives them."""
    pytest = [sys.executable, "-m", "pytest"]
    return [
        ("pytest -m 'not slow'", [*pytest, "-m", "not slow", *pytest_args]),
        ("pytest -m slow", [*pytest, "-m", "slow", *pytest_args]),
    ]


def main(pytest_args: list[str]) -> int:
    """Run the steps in order; stop at the first that fails."""
    # The site goes to a scratch directory, so that the check leaves the tree as it was.
    with tempfile.TemporaryDirectory(prefix="hostedai-harpoon-site-") as site:
        steps = [
            *STEPS,
            docs_step(site),
            *suite_runs(pytest_args),
        ]
        for name, command in steps:
            print(f"==> {name}", flush=True)
            started = time.monotonic()
            code = subprocess.call(
                command,
                # MkDocs reads the snippets it includes (CHANGELOG.md) from the top folder, and
                # lint-imports its contracts from pyproject.toml there.
                cwd=ROOT if name.startswith(("mkdocs", "lint-imports")) else None,
                env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
            )
            if name.startswith("pytest") and code == NO_TESTS_COLLECTED:
                code = 0
            print(
                f"    {name}: {'ok' if code == 0 else f'FAILED ({code})'} "
                f"in {time.monotonic() - started:.1f}s",
                flush=True,
            )
            if code != 0:
                return code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
