"""The README's two commands exist, and CI runs the test command word for word."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hostedai_harpoon.testing import Emulator

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


def test_the_readmes_orchestrator_example_runs_and_leaves_no_gpu(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    example = re.findall(r"```python\n(.*?)```", text, flags=re.S)[0]
    emulator = Emulator()
    with emulator.serve() as base_url:
        monkeypatch.setenv("HOSTED_AI_BASE_URL", base_url)
        monkeypatch.setenv("HOSTED_AI_API_KEY", "sk-readme")
        exec(compile(example, "README.md", "exec"), {"__name__": "readme"})
        assert emulator.live_allocations() == []
    printed = capsys.readouterr().out
    assert "qwen3-30b-a3b complexity" in printed  # the proof went to the large model
    assert len(emulator.requests_to("POST", "/v1/inference")) == 4
