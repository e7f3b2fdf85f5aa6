"""``examples/service/`` is a directory of scripts, not a package: make its module importable."""

from __future__ import annotations

import sys
from pathlib import Path

SERVICE = Path(__file__).resolve().parent.parent.parent / "examples" / "service"
if str(SERVICE) not in sys.path:
    sys.path.insert(0, str(SERVICE))
