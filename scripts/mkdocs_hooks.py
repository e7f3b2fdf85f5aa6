"""MkDocs hooks (``mkdocs.yml`` names this file): the pages' links to repository files
outside ``docs/`` work on the site too.

A page may link to ``../examples/demo.py`` or ``../README.md``, which read well on a code
host but lie outside the site. Such files are published under ``source/`` (as they are, not
as pages) and the links point there. ``tests/test_docs_links.py`` checks that they exist.
"""

from __future__ import annotations

import re
from pathlib import Path

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files
from mkdocs.structure.pages import Page

ROOT = Path(__file__).resolve().parent.parent
OUTSIDE = re.compile(r"\]\(\.\./([^)#\s]+)")
PUBLISHED = "source"


def linked_files(docs_dir: Path) -> set[str]:
    """The repository files that the pages of ``docs_dir`` link to from outside it."""
    return {
        target
        for page in docs_dir.glob("*.md")
        for target in OUTSIDE.findall(page.read_text(encoding="utf-8"))
        if (ROOT / target).is_file()
    }


def _published_name(target: str) -> str:
    # A .txt name keeps MkDocs from rendering a linked Markdown file as a page.
    return f"{PUBLISHED}/{target}" + (".txt" if target.endswith(".md") else "")


def published_links(markdown: str, src_uri: str) -> str:
    """``markdown`` of the page at ``src_uri`` with its links that leave the docs directory
    pointing at the published copies (links to files that do not exist are left alone)."""

    def published(match: re.Match[str]) -> str:
        target = match.group(1)
        if not (ROOT / target).is_file():
            return match.group(0)
        return f"]({'../' * src_uri.count('/')}{_published_name(target)}"

    return OUTSIDE.sub(published, markdown)


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Publish each linked repository file under ``source/``, byte for byte."""
    for target in sorted(linked_files(Path(config.docs_dir))):
        files.append(
            File.generated(config, _published_name(target), abs_src_path=str(ROOT / target))
        )
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Point the page's links that leave the docs directory at the published copies."""
    return published_links(markdown, page.file.src_uri)
