"""The gpuaas soak at full size: 2,000 orchestrated calls over TCP on the gpuaas emulator,
with the platform's quirks, transport faults and a tenth of the calls cancelled
(``tests/gpuaas/test_soak.py`` runs the same at 300). Prints the figures as JSON.

    python scripts/gpuaas_soak.py [--calls N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.gpuaas.test_soak import soak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=2000, help="orchestrated calls (2000)")
    calls = parser.parse_args().calls
    started = time.perf_counter()
    with pytest.MonkeyPatch.context() as patcher:
        figures = asyncio.run(soak(calls, patcher))
    figures["calls"] = calls
    figures["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(figures, indent=2))
    clean = figures["live"] == 0 and figures["orphans_left"] == 0
    sys.exit(0 if clean and not figures["taken_twice"] and not figures["foreign_touches"] else 1)


if __name__ == "__main__":
    main()
