"""The README and docs/*.md point only at files the repository has."""

from __future__ import annotations

import os
import re
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")
URL = re.compile(r"[a-z][a-z0-9+.-]*://\S+", flags=re.I)
# A name followed by "(" is a call (``response.json()``), not a file.
FILE_NAME = re.compile(r"(?<![\w/.-])([\w/.-]*\w\.(?:md|ya?ml|py|toml|json))(?![\w(])")


@cache
def file_names() -> frozenset[str]:
    """The name of every file in the repository, outside hidden and generated folders."""
    names: set[str] = set()
    for _folder, subfolders, files in os.walk(ROOT):
        subfolders[:] = [name for name in subfolders if not name.startswith((".", "__"))]
        names.update(files)
    return frozenset(names)


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def links(page: Path) -> list[str]:
    """The relative links of ``page``, without their anchors."""
    found = []
    for target in LINK.findall(page.read_text(encoding="utf-8")):
        if URL.match(target) or target.startswith(("#", "mailto:")):
            continue
        found.append(target.partition("#")[0])
    return found


# A program's output shown on a page (```text blocks) names the files of the run it shows.
TRANSCRIPT = re.compile(r"^```text\n.*?^```", flags=re.M | re.S)


def mentioned_files(page: Path) -> list[str]:
    """Every file name the prose or code of ``page`` mentions, links, URLs and transcripts
    of a program's output aside."""
    text = TRANSCRIPT.sub(" ", page.read_text(encoding="utf-8"))
    text = URL.sub(" ", LINK.sub("]", text))
    return FILE_NAME.findall(text)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_relative_link_points_at_a_file_in_the_repository(page: Path) -> None:
    missing = [target for target in links(page) if not (page.parent / target).exists()]

    assert missing == []


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_every_file_a_page_names_is_in_the_repository(page: Path) -> None:
    def exists(name: str) -> bool:
        if "/" in name:
            return (page.parent / name).exists() or (ROOT / name).exists()
        return name in file_names()

    missing = [name for name in mentioned_files(page) if not exists(name)]

    assert missing == []


def test_the_checks_see_links_and_file_names(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "See [the spec](openapi.yaml#paths), [site](https://example.com/a.md) and API.md; "
        "run `bench/routing.py` or https://example.com/b.py.",
        encoding="utf-8",
    )

    assert links(page) == ["openapi.yaml"]
    assert mentioned_files(page) == ["API.md", "bench/routing.py"]
    page.write_text("Run it:\n\n```text\nERROR test_x.py::t\n```\n\nthen see app.py\n")
    assert mentioned_files(page) == ["app.py"]
