"""What the package declares: its dependencies, extras and sdist agree with what it uses."""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = ROOT / "pyproject.toml"

pytestmark = pytest.mark.skipif(not PYPROJECT.exists(), reason="needs the source tree")


def _project() -> dict[str, object]:
    project: dict[str, object] = tomllib.loads(PYPROJECT.read_text(encoding="utf-8"))
    return project


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~\[; ]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _requirements() -> dict[str, list[str]]:
    project: dict[str, object] = _project()["project"]  # type: ignore[assignment]
    extras: dict[str, list[str]] = project["optional-dependencies"]  # type: ignore[assignment]
    return {"": list(project["dependencies"]), **extras}  # type: ignore[call-overload]


def _imported_by(paths: list[Path]) -> set[str]:
    found = set()
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names)


def test_the_opentelemetry_sdk_floors_agree() -> None:
    floors = {
        requirement
        for requirements in _requirements().values()
        for requirement in requirements
        if _name(requirement) == "opentelemetry-sdk"
    }
    assert len(floors) == 1, floors


def test_every_declared_dependency_is_imported_by_the_package() -> None:
    imported = _imported_by(list((ROOT / "hostedai_harpoon").rglob("*.py")))
    dists = packages_distributions()
    used = {_name(dist) for module in imported for dist in dists.get(module, [module])}
    declared = {_name(requirement) for requirement in _requirements()[""]}
    assert declared <= used, declared - used  # typing-extensions included


def test_what_the_tests_import_is_declared_in_the_dev_extra() -> None:
    # The project's own modules the tests import by name (scripts/, examples/service/).
    local = {"tests", "hostedai_harpoon", "harpoon_service", "service_guards", "mkdocs_hooks"}
    local |= {"check"}
    imported = _imported_by(list((ROOT / "tests").rglob("*.py"))) - local
    requirements = _requirements()
    declared = {_name(r) for r in requirements[""] + requirements["dev"]}
    for extra in ("emulator", "examples", "docs", "otel", "redis"):  # the dev extra has them
        declared |= {_name(r) for r in requirements[extra]}
    dists = packages_distributions()
    missing = {
        module
        for module in imported
        if not {_name(dist) for dist in dists.get(module, [module])} & declared
    }
    assert missing == set()


def test_the_sdist_holds_what_the_tests_read() -> None:
    targets = _project()["tool"]["hatch"]["build"]["targets"]  # type: ignore[index]
    included = set(targets["sdist"]["include"])
    read = set()
    for path in (ROOT / "tests").rglob("*.py"):
        if path.name == Path(__file__).name:
            continue  # this test's own pattern
        read |= set(re.findall(r'ROOT / "([^"/]+)', path.read_text(encoding="utf-8")))
    assert read - {"pyproject.toml"} <= included, read - included
