"""The docs site (``mkdocs.yml``): every page is in the navigation, the API reference covers
the public modules, and links that leave ``docs/`` are published with the site.

``scripts/check.py`` builds the site with ``mkdocs build --strict``; these are the checks
a build does not make.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
sys.path.insert(0, str(ROOT / "scripts"))

import mkdocs_hooks  # noqa: E402


def nav_pages(entries: list[Any]) -> list[str]:
    pages: list[str] = []
    for entry in entries:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages.extend(nav_pages(value) if isinstance(value, list) else [value])
    return pages


def config() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    return loaded


def test_every_page_of_docs_is_in_the_navigation_and_every_entry_is_a_page() -> None:
    nav = nav_pages(config()["nav"])
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert sorted(nav) == pages
    assert len(nav) == len(set(nav))


def test_the_api_reference_covers_the_public_modules() -> None:
    modules = {
        line.removeprefix("::: ").strip()
        for page in (DOCS / "reference").glob("*.md")
        for line in page.read_text(encoding="utf-8").splitlines()
        if line.startswith("::: ")
    }
    assert modules == {
        "hostedai_harpoon",
        "hostedai_harpoon.routing",
        "hostedai_harpoon.orchestrator",
        "hostedai_harpoon.testing",
    }


def test_the_changelog_page_includes_the_changelog() -> None:
    assert (DOCS / "changelog.md").read_text(encoding="utf-8").strip() == '--8<-- "CHANGELOG.md"'


def test_links_leaving_docs_point_at_the_published_copies() -> None:
    markdown = (
        "[demo](../examples/demo.py), [readme](../README.md), [cli](cli.md), "
        "[gone](../no/such/file.py), [site](https://example.com/x.py)"
    )
    assert mkdocs_hooks.published_links(markdown, "wire.md") == (
        "[demo](source/examples/demo.py), [readme](source/README.md.txt), [cli](cli.md), "
        "[gone](../no/such/file.py), [site](https://example.com/x.py)"
    )
    nested = mkdocs_hooks.published_links("[d](../examples/demo.py#L3)", "a/b.md")
    assert nested == "[d](../source/examples/demo.py#L3)"


def test_the_linked_files_are_the_ones_the_pages_name() -> None:
    linked = mkdocs_hooks.linked_files(DOCS)
    assert "examples/testing_your_app.py" in linked
    assert all((ROOT / target).is_file() for target in linked)


def test_the_reference_shows_constructors_inherited_members_and_default_values(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import griffe

    [mkdocstrings] = [p["mkdocstrings"] for p in config()["plugins"] if "mkdocstrings" in p]
    options = mkdocstrings["handlers"]["python"]["options"]
    assert options["merge_init_into_class"] is True  # HostedAI(base_url, ..., allow_insecure_http)
    assert options["inherited_members"] is True  # with_options() lives on BaseClient
    monkeypatch.chdir(ROOT)  # mkdocs.yml names the extension's file from the top folder
    extensions = griffe.load_extensions(*options["extensions"])
    package = griffe.load("hostedai_harpoon", search_paths=[str(ROOT)], extensions=extensions)

    for name in ("HostedAI", "AsyncHostedAI"):
        client = package[name]
        assert "allow_insecure_http" in [p.name for p in client.all_members["__init__"].parameters]
        assert "with_options" in client.all_members
        allocate = client.all_members["allocate"].parameters
        assert str(allocate["ttl"].default) == "120.0"  # not DEFAULT_LEASE_TTL
        assert str(allocate["release_timeout"].default) == "30.0"
    # A public constant keeps its name; a class the SDK makes shows no constructor.
    orchestrator = package["Orchestrator"].all_members["__init__"].parameters
    assert str(orchestrator["targets"].default) == "DEFAULT_TARGETS"
    for made_by_the_sdk in ("Lease", "AsyncLease", "Session", "InferenceStream"):
        assert "__init__" not in package[made_by_the_sdk].all_members
