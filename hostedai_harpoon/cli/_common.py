"""What the commands share: the connection and its pool, exit statuses, output (tables, JSON,
errors as one line or as a JSON object)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TextIO, TypeVar

import hostedai_harpoon as harpoon

from .._checks import check_id
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
    """A mistake in how the command was called: the message is shown, the exit status is 2.

    ``kind`` is the error's ``type`` in ``--json`` output.
    """

    def __init__(self, message: str, kind: str = "UsageError") -> None:
        super().__init__(message)
        self.kind = kind


class _Failure(Exception):
    """The command could not do what it was asked: the message is shown, the exit status is 1.

    ``kind`` is the error's ``type`` in ``--json`` output.
    """

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


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


def _report_error(
    prog: str, error: BaseException | str, exit_status: int, as_json: bool, kind: str = ""
) -> int:
    """Report a failure: one line on stderr, or with ``--json`` one JSON object on stdout
    (``{"error": {"type", "message", "exit_code"}}``, and an API error's ``status_code``,
    ``code`` and ``request_id``). The exit status, for ``main()`` to return."""
    message = error if isinstance(error, str) else _one_line(error)
    if not as_json:
        print(f"{prog}: error: {message}", file=sys.stderr)
        return exit_status
    described: dict[str, object] = {
        "type": kind or getattr(error, "kind", None) or type(error).__name__,
        "message": message,
        "exit_code": exit_status,
    }
    if isinstance(error, harpoon.APIStatusError):
        described.update(
            status_code=error.status_code, code=error.code, request_id=error.request_id
        )
    print(json.dumps({"error": described}, ensure_ascii=False), flush=True)
    return exit_status


# The connection ----------------------------------------------------------------------------


def _pool_source(args: argparse.Namespace) -> str:
    """Where the command's pool comes from, as the user spelled it."""
    return "--pool" if args.pool is not None else ENV_POOL_ID


def _connect(args: argparse.Namespace, client_class: type[ClientT]) -> ClientT:
    """A client configured from the options and the environment; a usage error, worded for
    the command line, when they cannot make one."""
    if args.base_url is None and not os.environ.get(ENV_BASE_URL, "").strip():
        raise _UsageError(
            f"no API address: pass --base-url or set {ENV_BASE_URL}", "ConfigurationError"
        )
    if not os.environ.get(ENV_API_KEY, "").strip():
        raise _UsageError(
            f"no API key: set {ENV_API_KEY} (the key is not taken on the command line)",
            "ConfigurationError",
        )
    pool = args.pool if args.pool is not None else os.environ.get(ENV_POOL_ID)
    if pool is not None and pool.strip():
        try:
            check_id(pool.strip(), _pool_source(args))
        except harpoon.ConfigurationError as exc:
            raise _UsageError(str(exc), "ConfigurationError") from None
    options: dict[str, Any] = {} if args.timeout is None else {"timeout": args.timeout}
    try:
        return client_class(
            base_url=args.base_url,
            pool_id=args.pool,
            allow_insecure_http=args.allow_insecure_http,
            **options,
        )
    except harpoon.ConfigurationError as exc:
        raise _UsageError(_command_line_advice(str(exc), args), "ConfigurationError") from None


def _command_line_advice(message: str, args: argparse.Namespace) -> str:
    """The SDK's ``message`` with its advice about Python arguments put in the command's terms."""
    source = "--base-url" if args.base_url is not None else ENV_BASE_URL
    for python, command_line in (
        (f"(set {ENV_BASE_URL} or pass base_url=)", f"(from {source})"),
        ("pass allow_insecure_http=True", "pass --allow-insecure-http"),
        ("pass api_key= instead", f"set {ENV_API_KEY} instead"),
    ):
        message = message.replace(python, command_line)
    return message


def _check_pool(args: argparse.Namespace, client: harpoon.HostedAI) -> harpoon.Pool | None:
    """The pool the command is configured with (``--pool`` or ``HOSTED_AI_POOL_ID``), checked
    to exist before the command does anything; ``None`` when none is configured.

    Every API command checks it, so that a mistyped pool reads the same whatever the command:
    listing an unknown pool's allocations answers an empty list, and an allocation in it a
    422, neither of which says "there is no such pool".
    """
    if client.pool_id is None:
        return None
    try:
        return client.get_pool(client.pool_id)
    except harpoon.NotFoundError:
        known = ", ".join(pool.id for pool in client.list_pools()) or "none"
        raise _Failure(
            f"there is no pool {client.pool_id!r} (from {_pool_source(args)}); "
            f"the pools are: {known}",
            "NotFoundError",
        ) from None
