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


def _linked(config: MkDocsConfig) -> set[str]:
    """The repository files that pages link to from outside the docs directory."""
    docs = Path(config.docs_dir)
    return {
        target
        for page in docs.glob("*.md")
        for target in OUTSIDE.findall(page.read_text(encoding="utf-8"))
        if (ROOT / target).is_file()
    }


def on_files(files: Files, config: MkDocsConfig) -> Files:
    """Publish each linked repository file under ``source/``, byte for byte."""
    for target in sorted(_linked(config)):
        # A .txt name keeps MkDocs from rendering a linked Markdown file as a page.
        published = f"{PUBLISHED}/{target}" + (".txt" if target.endswith(".md") else "")
        files.append(File.generated(config, published, abs_src_path=str(ROOT / target)))
    return files


def on_page_markdown(markdown: str, page: Page, config: MkDocsConfig, files: Files) -> str:
    """Point the links that leave the docs directory at the published copies."""

    def published(match: re.Match[str]) -> str:
        target = match.group(1)
        if not (ROOT / target).is_file():
            return match.group(0)
        suffix = ".txt" if target.endswith(".md") else ""
        depth = "../" * page.file.src_uri.count("/")
        return f"]({depth}{PUBLISHED}/{target}{suffix}"

    return OUTSIDE.sub(published, markdown)
