"""docs/orchestrator.md: what it shows runs, and it promises no option the SDK lacks."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator

DOCS = Path(__file__).resolve().parents[2] / "docs"
ORCHESTRATOR_MD = DOCS / "orchestrator.md"

pytestmark = pytest.mark.timeout(60)


def python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def test_the_first_example_runs_and_leaves_nothing_behind(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    example = python_blocks(ORCHESTRATOR_MD)[0]
    with emulator.serve() as url:
        monkeypatch.setenv("HOSTED_AI_BASE_URL", url)
        monkeypatch.setenv("HOSTED_AI_API_KEY", "docs-key")
        monkeypatch.delenv("HOSTED_AI_POOL_ID", raising=False)
        exec(compile(example, str(ORCHESTRATOR_MD), "exec"), {"__name__": "docs"})
    printed = capsys.readouterr().out
    assert "gemma-3-270m - complexity" in printed
    assert "qwen3-30b-a3b ['routed']" in printed
    assert "TargetStats(requests=3" in printed
    assert emulator.live_allocations() == []


def test_every_option_in_the_table_is_a_parameter_of_the_orchestrator() -> None:
    parameters = set(inspect.signature(harpoon.Orchestrator).parameters)
    table = ORCHESTRATOR_MD.read_text(encoding="utf-8").split("## Options")[1]
    documented = set(re.findall(r"^\| `([a-z_]+)`", table, flags=re.M))
    documented |= {"ttl", "ready_timeout", "capacity_timeout", "clock", "sleep"}
    assert documented <= parameters
    assert parameters - {"client", "renamed"} <= documented  # renamed: the old names


def test_the_routing_docs_no_longer_call_the_orchestrator_planned() -> None:
    assert "planned" not in (DOCS / "routing.md").read_text(encoding="utf-8")
    [example] = [b for b in python_blocks(DOCS / "routing.md") if "Orchestrator(" in b]
    compile(example, "routing.md", "exec")
