"""Run every check CI runs: lint, format, types, then the whole test suite.

Usage (inside the project's virtual environment): ``python scripts/check.py [pytest args]``.
"""

from __future__ import annotations

import subprocess
import sys
import time

STEPS: list[tuple[str, list[str]]] = [
    ("ruff check", [sys.executable, "-m", "ruff", "check", "."]),
    ("ruff format --check", [sys.executable, "-m", "ruff", "format", "--check", "."]),
    ("mypy --strict", [sys.executable, "-m", "mypy"]),
]


def main(pytest_args: list[str]) -> int:
    """Run the steps in order; stop at the first that fails."""
    steps = [*STEPS, ("pytest", [sys.executable, "-m", "pytest", *pytest_args])]
    for name, command in steps:
        print(f"==> {name}", flush=True)
        started = time.monotonic()
        code = subprocess.call(command)
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
