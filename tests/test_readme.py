"""The README's two commands exist, and CI runs the test command word for word."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S)]


def test_the_readme_holds_exactly_a_demo_and_a_test_command() -> None:
    commands = readme_commands()
    assert len(commands) == 2
    demo, tests = commands
    assert "examples/demo.py" in demo
    assert "scripts/check.py" in tests


def test_ci_runs_the_readmes_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    assert readme_commands()[1] in ci


def test_the_demo_file_exists() -> None:
    assert (ROOT / "examples" / "demo.py").is_file()
