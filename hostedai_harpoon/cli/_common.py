"""What the commands share: exit statuses, output (tables, JSON, one-line errors)."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

import hostedai_harpoon as harpoon

from .._config import ENV_API_KEY, ENV_BASE_URL, ENV_POOL_ID
from .._telemetry import MASK, MIN_SECRET

ClientT = TypeVar("ClientT", harpoon.HostedAI, harpoon.AsyncHostedAI)


_PROG = "harpoon"
_USAGE_ERROR = 2
_INTERRUPTED = 130
_FINISHED = frozenset(
    {
        harpoon.AllocationStatus.RELEASED,
        harpoon.AllocationStatus.FAILED,
        harpoon.AllocationStatus.EXPIRED,
    }
)
_BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"

_EXIT_STATUS = """\
Exit status: 0 on success, 1 when the command failed (the API answered an error, a
benchmark failed, the service is degraded), 2 for bad usage or configuration, 130 when
interrupted."""

_EPILOG = f"""\
The API commands read {ENV_BASE_URL}, {ENV_API_KEY} and {ENV_POOL_ID} from the
environment; --base-url and --pool override the address and the pool. The API key is
only taken from {ENV_API_KEY}.

{_EXIT_STATUS}"""


class _UsageError(Exception):
    """A mistake in how the command was called: the message is shown, the exit status is 2."""


class _Failure(Exception):
    """The command could not do what it was asked: the message is shown, the exit status is 1."""


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


# Output ----------------------------------------------------------------------------------


class _Masked:
    """``target`` with the API key masked in everything written to it: whatever a server
    sends back (an error's text, a field of an answer), the key never reaches the terminal
    or a CI log. (A key cut in two by separate writes is not recognised.)"""

    def __init__(self, target: TextIO) -> None:
        self._target = target

    def write(self, text: str) -> int:
        key = os.environ.get(ENV_API_KEY, "").strip()
        if len(key) >= MIN_SECRET and key in text:
            text = text.replace(key, MASK)
        return self._target.write(text)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._target, name)


def _print_json(data: object) -> None:
    print(json.dumps(data, indent=2, ensure_ascii=False))


def _table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    cells = [list(headers), *([str(cell) for cell in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        for row in cells
    )


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split()) or type(error).__name__


def _timestamp(moment: datetime | None) -> str | None:
    return None if moment is None else moment.isoformat(timespec="seconds")


def _allocation_json(allocation: harpoon.Allocation) -> dict[str, object]:
    return {
        "id": allocation.id,
        "pool_id": allocation.pool_id,
        "model": allocation.model,
        "gpu_count": allocation.gpu_count,
        "gpu_type": allocation.gpu_type,
        "status": allocation.status.value,
        "endpoint": allocation.endpoint,
        "created_at": _timestamp(allocation.created_at),
        "expires_at": _timestamp(allocation.expires_at),
        "ttl_seconds": allocation.ttl_seconds,
    }


def _allocation_row(a: harpoon.Allocation) -> tuple[object, ...]:
    expires = _timestamp(a.expires_at) or "never"
    return (
        a.id,
        a.pool_id,
        a.model,
        a.gpu_count,
        a.status.value,
        _timestamp(a.created_at),
        expires,
    )


def _pool_row(p: harpoon.Pool) -> tuple[object, ...]:
    default = "yes" if p.default else ""
    return (p.id, p.gpu_type, p.gpus_free, p.gpus_total, ", ".join(p.models), default)
