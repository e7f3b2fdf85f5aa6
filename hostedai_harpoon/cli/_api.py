"""The API commands: health, pools, allocations list and release."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import hostedai_harpoon as harpoon

from .._config import ENV_API_KEY, ENV_BASE_URL, ENV_POOL_ID
from ._common import (
    _FINISHED,
    _allocation_json,
    _allocation_row,
    _Failure,
    _one_line,
    _pool_row,
    _print_json,
    _table,
    _UsageError,
)

ClientT = TypeVar("ClientT", harpoon.HostedAI, harpoon.AsyncHostedAI)

# The API commands ------------------------------------------------------------------------


def _connect(args: argparse.Namespace, client_class: type[ClientT]) -> ClientT:
    if args.base_url is None and not os.environ.get(ENV_BASE_URL, "").strip():
        raise _UsageError(f"no API address: pass --base-url or set {ENV_BASE_URL}")
    if not os.environ.get(ENV_API_KEY, "").strip():
        raise _UsageError(
            f"no API key: set {ENV_API_KEY} (the key is not taken on the command line)"
        )
    options: dict[str, Any] = {} if args.timeout is None else {"timeout": args.timeout}
    try:
        return client_class(
            base_url=args.base_url,
            pool_id=args.pool,
            allow_insecure_http=args.allow_insecure_http,
            **options,
        )
    except harpoon.ConfigurationError as exc:
        raise _UsageError(_command_line_advice(str(exc), args)) from None


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


def _pool_source(args: argparse.Namespace) -> str:
    return "--pool" if args.pool is not None else ENV_POOL_ID


def _existing_pool(client: harpoon.HostedAI, pool_id: str, source: str) -> harpoon.Pool:
    """The pool ``pool_id`` (named by ``source``); a one-line failure when there is none."""
    try:
        return client.get_pool(pool_id)
    except harpoon.NotFoundError:
        known = ", ".join(pool.id for pool in client.list_pools()) or "none"
        raise _Failure(
            f"there is no pool {pool_id!r} (from {source}); the pools are: {known}"
        ) from None


def _with_client(
    command: Callable[[argparse.Namespace, harpoon.HostedAI], int],
) -> Callable[[argparse.Namespace], int]:
    """``command`` run with a client configured from the options and the environment."""

    def run(args: argparse.Namespace) -> int:
        with _connect(args, harpoon.HostedAI) as client:
            return command(args, client)

    return run


def _health(args: argparse.Namespace, client: harpoon.HostedAI) -> int:
    health = client.health()
    # The health check itself takes no key, by design: one authenticated call checks it.
    refused: str | None = None
    try:
        client.list_pools()
    except (harpoon.AuthenticationError, harpoon.PermissionDeniedError) as exc:
        refused = _one_line(exc)
    if args.json:
        _print_json(
            {
                "status": health.status,
                "version": health.version,
                "key": "accepted" if refused is None else "refused",
                "key_error": refused,
            }
        )
    else:
        key = "key accepted" if refused is None else f"key refused ({refused})"
        print(f"{health.status} (version {health.version}), {key}")
    return 0 if health.status == "ok" and refused is None else 1


def _pools(args: argparse.Namespace, client: harpoon.HostedAI) -> int:
    if args.pool is None:
        pools = client.list_pools()
    else:
        pools = [_existing_pool(client, args.pool, "--pool")]
    if args.json:
        _print_json(
            [
                {
                    "id": pool.id,
                    "gpu_type": pool.gpu_type,
                    "gpus_free": pool.gpus_free,
                    "gpus_total": pool.gpus_total,
                    "models": list(pool.models),
                    "default": pool.default,
                }
                for pool in pools
            ]
        )
    else:
        print(
            _table(
                ["POOL", "GPU TYPE", "FREE", "TOTAL", "MODELS", "DEFAULT"],
                map(_pool_row, pools),
            )
        )
    return 0


def _where(client: harpoon.HostedAI) -> str:
    return "" if client.pool_id is None else f" in pool {client.pool_id}"


def _check_pool(args: argparse.Namespace, client: harpoon.HostedAI) -> None:
    """Fail when the pool the command is scoped to does not exist.

    Listing an unknown pool's allocations answers an empty list, which would read as
    "nothing holds GPUs there" instead of "there is no such pool".
    """
    if client.pool_id is not None:
        _existing_pool(client, client.pool_id, _pool_source(args))


def _list_allocations(args: argparse.Namespace, client: harpoon.HostedAI) -> int:
    _check_pool(args, client)
    allocations = client.list_allocations(client.pool_id)
    if not args.all_states:
        allocations = [a for a in allocations if a.status is not harpoon.AllocationStatus.RELEASING]
    if args.json:
        _print_json([_allocation_json(a) for a in allocations])
    elif not allocations:
        print(f"no allocations hold GPUs{_where(client)}")
    else:
        print(
            _table(
                ["ID", "POOL", "MODEL", "GPUS", "STATUS", "CREATED", "EXPIRES"],
                map(_allocation_row, allocations),
            )
        )
    return 0


def _release_one(client: harpoon.HostedAI, allocation_id: str, check: bool) -> str:
    """Release one allocation; what happened, as a word or two."""
    if check:
        # Releasing is idempotent, and an unknown id counts as released: ask first, so that
        # a mistyped id is reported instead of "released".
        try:
            current = client.get_allocation(allocation_id)
        except harpoon.NotFoundError:
            raise _NoSuchAllocation(allocation_id) from None
        if current.status in _FINISHED:
            return f"already {current.status.value}"
    client.release_allocation(allocation_id)
    return "released"


class _NoSuchAllocation(Exception):
    """An id given to ``release`` that the API does not know."""

    def __str__(self) -> str:
        return f"there is no allocation {self.args[0]!r}"


def _release_allocations(args: argparse.Namespace, client: harpoon.HostedAI) -> int:
    if args.all:
        _check_pool(args, client)
        ids = [a.id for a in client.list_allocations(client.pool_id)]
        if not ids and not args.json:
            print(f"nothing to release: no allocations hold GPUs{_where(client)}")
    else:
        ids = list(dict.fromkeys(args.ids))
    results: list[dict[str, str | None]] = []
    for allocation_id in ids:
        try:
            outcome = _release_one(client, allocation_id, check=not args.all)
        except (harpoon.HostedAIError, _NoSuchAllocation) as exc:
            results.append({"id": allocation_id, "outcome": "failed", "error": _one_line(exc)})
            print(f"{args.prog}: error: {allocation_id}: {_one_line(exc)}", file=sys.stderr)
            continue
        results.append({"id": allocation_id, "outcome": outcome, "error": None})
        if not args.json:
            print(f"{allocation_id}: {outcome}")
    if args.json:
        _print_json(results)
    return 1 if any(result["error"] for result in results) else 0


def _reconcile(args: argparse.Namespace, client: harpoon.HostedAI) -> int:
    released = client.reconcile()
    if args.json:
        _print_json({"released": released})
    elif released:
        for subscription_id in released:
            print(f"{subscription_id}: released")
    else:
        print("nothing to release: the ledger owns nothing left held")
    return 0
