"""docs/routing.md: what it shows runs, and it promises nothing the SDK does not have."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conftest import EmulatorFactory

ROUTING_MD = Path(__file__).resolve().parents[2] / "docs" / "routing.md"


def python_blocks() -> list[str]:
    text = ROUTING_MD.read_text(encoding="utf-8")
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def paragraphs() -> list[str]:
    return ROUTING_MD.read_text(encoding="utf-8").split("\n\n")


def test_the_docs_show_how_to_use_a_decision_with_the_client_today(
    make_emulator: EmulatorFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    [example] = [
        block for block in python_blocks() if "client.allocate(" in block and "cascade" not in block
    ]
    assert "model=target.model" in example
    emulator = make_emulator()

    with emulator.serve() as url:
        monkeypatch.setenv("HOSTED_AI_BASE_URL", url)
        monkeypatch.setenv("HOSTED_AI_API_KEY", "docs-key")
        monkeypatch.delenv("HOSTED_AI_POOL_ID", raising=False)
        exec(compile(example, str(ROUTING_MD), "exec"), {})

    printed = capsys.readouterr().out
    assert "gemma-3-270m" in printed
    assert " -> " in printed
    allocations = emulator.allocations()
    assert [allocation.model for allocation in allocations] == ["gemma-3-270m"]
    assert emulator.live_allocations() == []


def test_the_cascade_example_runs_and_escalates_a_short_answer(
    make_emulator: EmulatorFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    [example] = [block for block in python_blocks() if "cascade.escalate(" in block]
    emulator = make_emulator()

    with emulator.serve() as url:
        monkeypatch.setenv("HOSTED_AI_BASE_URL", url)
        monkeypatch.setenv("HOSTED_AI_API_KEY", "docs-key")
        monkeypatch.delenv("HOSTED_AI_POOL_ID", raising=False)
        exec(compile(example, str(ROUTING_MD), "exec"), {})

    printed = capsys.readouterr().out
    assert printed.startswith("escalated from gemma-3-270m: the accept check rejected the answer")
    allocations = emulator.allocations()
    assert [allocation.model for allocation in allocations] == ["gemma-3-270m", "qwen3-30b-a3b"]
    assert emulator.live_allocations() == []
