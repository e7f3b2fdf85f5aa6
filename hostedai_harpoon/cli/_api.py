"""The API commands: health, pools, allocations list and release."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import hostedai_harpoon as harpoon

from ._common import (
    _FINISHED,
    _allocation_json,
    _allocation_row,
    _check_pool,
    _connect,
    _one_line,
    _pool_row,
    _print_json,
    _table,
    _timestamp,
)

# The API commands ------------------------------------------------------------------------


def _with_client(
    command: Callable[[argparse.Namespace, harpoon.HostedAI], int], *, checks_pool: bool = False
) -> Callable[[argparse.Namespace], int]:
    """``command`` run with a client configured from the options and the environment, once
    the configured pool is found to exist (unless the command ``checks_pool`` itself)."""

    def run(args: argparse.Namespace) -> int:
        with _connect(args, harpoon.HostedAI) as client:
            if not checks_pool:
                _check_pool(args, client)
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
    if refused is None:  # a refused key would only be refused again
        _check_pool(args, client)
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
    pool = _check_pool(args, client)
    # HOSTED_AI_POOL_ID is checked but does not narrow the list; --pool does.
    pools = [pool] if pool is not None and args.pool is not None else client.list_pools()
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


def _holders(client: harpoon.HostedAI) -> str:
    """What holds GPUs, in the client's dialect: allocations, or a team's subscriptions."""
    if client.team_id is None:
        return "allocations"
    return f"subscriptions of team {client.team_id}"


def _list_allocations(args: argparse.Namespace, client: harpoon.HostedAI) -> int:
    allocations = client.list_allocations(client.pool_id)
    if not args.all_states:
        allocations = [a for a in allocations if a.status is not harpoon.AllocationStatus.RELEASING]
    if args.json:
        _print_json([_allocation_json(a) for a in allocations])
    elif not allocations:
        print(f"no {_holders(client)} hold GPUs{_where(client)}")
    elif client.team_id is not None:  # a subscription has no model and no expiry
        rows = [(a.id, a.pool_id, client.team_id, a.gpu_count, a.status.value,
                 _timestamp(a.created_at)) for a in allocations]  # fmt: skip
        print(_table(["SUBSCRIPTION", "POOL", "TEAM", "GPUS", "STATUS", "CREATED"], rows))
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
            raise _NoSuchAllocation(allocation_id, client.team_id) from None
        if current.status in _FINISHED:
            return f"already {current.status.value}"
    client.release_allocation(allocation_id)
    return "released"


class _NoSuchAllocation(Exception):
    """An id given to ``release`` that the API does not know."""

    def __str__(self) -> str:
        allocation_id, team_id = self.args
        if team_id is not None:
            return f"team {team_id} has no subscription {allocation_id!r}"
        return f"there is no allocation {allocation_id!r}"


def _release_allocations(args: argparse.Namespace, client: harpoon.HostedAI) -> int:
    if args.all:
        ids = [a.id for a in client.list_allocations(client.pool_id)]
        if not ids and not args.json:
            print(f"nothing to release: no {_holders(client)} hold GPUs{_where(client)}")
    else:
        ids = list(dict.fromkeys(args.ids))
    results: list[dict[str, str | None]] = []
    for allocation_id in ids:
        try:
            outcome = _release_one(client, allocation_id, check=not args.all)
        except (harpoon.HostedAIError, _NoSuchAllocation) as exc:
            results.append({"id": allocation_id, "outcome": "failed", "error": _one_line(exc)})
            if not args.json:  # the JSON results carry the error
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
    elif client.team_id is not None:
        print(
            f"nothing to release: no subscription of team {client.team_id} that the ledger "
            "owns is left held"
        )
    else:
        print("nothing to release: no orphans are held")
    return 0
