"""Run every benchmark and write their table into ``docs/performance.md``.

Run ``python bench/run_all.py`` in a checkout (a few minutes). It is ``harpoon bench
--write docs/performance.md``: each script runs in its own process, its output is shown as
it comes, and the figures it records (each a ratio against a baseline measured in the same
run, with the machine described) replace the table between the page's markers. Extra
arguments go to ``harpoon bench`` (``--json``, say). The exit status is 1 when a benchmark
missed its target or failed.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hostedai_harpoon.cli import main

PAGE = Path(__file__).resolve().parent.parent / "docs" / "performance.md"

if __name__ == "__main__":
    sys.exit(main(["bench", "--write", str(PAGE), *sys.argv[1:]]))
