"""The test suite itself: soaks are slow and bounded by count, slow tests get a generous
limit, and the check CI runs takes the fast tests first, then the slow ones."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

from tests.conftest import SLOW_TIMEOUT

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))

import check  # noqa: E402

SOAKS = sorted((ROOT / "tests").rglob("test_soak.py"))


def _marks(decorators: list[ast.expr]) -> set[str]:
    """The ``pytest.mark.X`` names among ``decorators`` (called or not)."""
    names = set()
    for decorator in decorators:
        node = decorator.func if isinstance(decorator, ast.Call) else decorator
        if isinstance(node, ast.Attribute):
            names.add(node.attr)
    return names


def test_there_are_soaks() -> None:
    assert len(SOAKS) >= 2


@pytest.mark.parametrize("path", SOAKS, ids=lambda path: str(path.relative_to(ROOT)))
def test_a_soak_is_slow_and_bounded_by_its_count_not_by_wall_time(path: Path) -> None:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    module_marks = {
        mark
        for node in tree.body
        if isinstance(node, ast.Assign)
        and any(isinstance(t, ast.Name) and t.id == "pytestmark" for t in node.targets)
        for mark in _marks([node.value])
    }
    tests = [
        node
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.name.startswith("test_")
    ]
    assert tests
    for test in tests:
        marks = module_marks | _marks(test.decorator_list)
        assert "slow" in marks, f"{test.name} is a soak: mark it slow"
        # The per-test limit is SLOW_TIMEOUT's, only there to end a hang.
        assert "timeout" not in marks, f"{test.name}: a soak takes as long as its count takes"
    timed = {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in {"wait_for", "timeout", "timeout_at"}
    }
    assert not timed, f"{path.name} bounds its run by wall time ({timed})"


@pytest.mark.slow
def test_a_slow_test_gets_the_generous_limit(request: pytest.FixtureRequest) -> None:
    limit = request.node.get_closest_marker("timeout")
    assert limit is not None
    assert limit.args == (SLOW_TIMEOUT,)


def test_a_fast_test_keeps_the_projects_limit(request: pytest.FixtureRequest) -> None:
    assert request.node.get_closest_marker("timeout") is None  # pyproject.toml's 60 s


def test_check_runs_the_fast_tests_then_the_slow_ones_with_the_same_arguments() -> None:
    fast, slow = check.suite_runs(["-x", "tests/leases"])
    assert fast[1][1:] == ["-m", "pytest", "-m", "not slow", "-x", "tests/leases"]
    assert slow[1][1:] == ["-m", "pytest", "-m", "slow", "-x", "tests/leases"]
