"""The ``harpoon`` command: the emulator, the API's state, held GPUs, inference, benchmarks.

```
harpoon emulator [--port PORT] [--error-rate RATE ...]   serve the emulator on 127.0.0.1
harpoon health | pools                                   what the service says
harpoon allocations list [--all-states]                  what is holding GPUs
harpoon allocations release ID... | --all                release GPUs nobody released
harpoon infer TEXT [--target NAME] [--stream]            route a prompt through the Orchestrator
harpoon bench [NAME ...]                                 run the source tree's benchmarks
```

The API commands read ``HOSTED_AI_BASE_URL``, ``HOSTED_AI_API_KEY`` and ``HOSTED_AI_POOL_ID``;
``--base-url`` and ``--pool`` override the first and the last. The key is only read from the
environment, so that it never lands in a shell history or a process list.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import hostedai_harpoon as harpoon

from ._config import ENV_API_KEY, ENV_BASE_URL, ENV_POOL_ID

if TYPE_CHECKING:
    from .orchestrator import Orchestrator, RoutedResult

ClientT = TypeVar("ClientT", harpoon.HostedAI, harpoon.AsyncHostedAI)

__all__ = ["main"]

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
_BENCH_DIR = Path(__file__).resolve().parent.parent / "bench"

_EPILOG = f"""\
The API commands read {ENV_BASE_URL}, {ENV_API_KEY} and {ENV_POOL_ID} from the
environment; --base-url and --pool override the address and the pool. The API key is
only taken from {ENV_API_KEY}.

Exit status: 0 on success, 1 when the command failed (the API answered an error, a
benchmark failed, the service is degraded), 2 for bad usage or configuration, 130 when
interrupted."""


class _UsageError(Exception):
    """A mistake in how the command was called: the message is shown, the exit status is 2."""


# Output ----------------------------------------------------------------------------------


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


# The API commands ------------------------------------------------------------------------


def _connect(args: argparse.Namespace, client_class: type[ClientT]) -> ClientT:
    if args.base_url is None and not os.environ.get(ENV_BASE_URL, "").strip():
        raise _UsageError(f"no API address: pass --base-url or set {ENV_BASE_URL}")
    if not os.environ.get(ENV_API_KEY, "").strip():
        raise _UsageError(
            f"no API key: set {ENV_API_KEY} (the key is not taken on the command line)"
        )
    options: dict[str, Any] = {} if args.timeout is None else {"timeout": args.timeout}
    return client_class(base_url=args.base_url, pool_id=args.pool, **options)


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
    if args.json:
        _print_json({"status": health.status, "version": health.version})
    else:
        print(f"{health.status} (version {health.version})")
    return 0 if health.status == "ok" else 1


def _pools(args: argparse.Namespace, client: harpoon.HostedAI) -> int:
    pools = client.list_pools()
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


def _list_allocations(args: argparse.Namespace, client: harpoon.HostedAI) -> int:
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


# infer -----------------------------------------------------------------------------------


def _infer(args: argparse.Namespace) -> int:
    # asyncio.run turns Ctrl-C into a cancellation of this coroutine, so the orchestrator's
    # exit runs and releases what it leased before KeyboardInterrupt reaches main().
    return asyncio.run(_infer_async(args))


async def _infer_async(args: argparse.Namespace) -> int:
    from .orchestrator import Orchestrator

    async with (
        _connect(args, harpoon.AsyncHostedAI) as client,
        Orchestrator(client) as orchestrator,
    ):
        if args.stream:
            await _infer_streamed(args, orchestrator)
            return 0
        routed = await orchestrator.process(
            args.text, target=args.target, max_tokens=args.max_tokens
        )
    if args.json:
        _print_json(_routed_json(routed))
        return 0
    _print_decision(routed.decision)
    print(routed.result.text)
    failures = [
        f"{attempt.target.name} failed ({_one_line(attempt.error)})"
        for attempt in routed.attempts
        if attempt.error is not None
    ]
    if failures:
        print(f"failed over: {'; '.join(failures)}")
    usage = routed.result.usage
    print(
        f"({usage.input_tokens} tokens in, {usage.output_tokens} out, {routed.latency:.2f}s, "
        f"about ${routed.cost:.6f})"
    )
    return 0


async def _infer_streamed(args: argparse.Namespace, orchestrator: Orchestrator) -> None:
    async with (
        orchestrator.allocate() as session,
        session.stream(args.text, target=args.target, max_tokens=args.max_tokens) as chunks,
    ):
        decision = chunks.decision
        if args.json:
            print(json.dumps(_decision_json(decision)), flush=True)
        else:
            _print_decision(decision)
        usage = None
        async for chunk in chunks:
            if args.json:
                print(json.dumps({"delta": chunk.delta, "finish_reason": chunk.finish_reason}))
            else:
                print(chunk.delta, end="", flush=True)
            usage = chunk.usage or usage
    if not args.json:
        print()
        if usage is not None:
            print(f"({usage.input_tokens} tokens in, {usage.output_tokens} out)")


def _print_decision(decision: harpoon.RouteDecision) -> None:
    print(f"target: {decision.target.name}\nreason: {decision.reason}\n", flush=True)


def _decision_json(decision: harpoon.RouteDecision) -> dict[str, object]:
    return {"target": decision.target.name, "reason": decision.reason}


def _routed_json(routed: RoutedResult) -> dict[str, object]:
    result = routed.result
    return {
        **_decision_json(routed.decision),
        "text": result.text,
        "model": result.model,
        "finish_reason": result.finish_reason,
        "usage": {
            "input_tokens": result.usage.input_tokens,
            "output_tokens": result.usage.output_tokens,
        },
        "latency": routed.latency,
        "cost": routed.cost,
        "attempts": [
            {
                "target": attempt.target.name,
                "reason": attempt.reason,
                "allocation_id": attempt.allocation_id,
                "error": None if attempt.error is None else _one_line(attempt.error),
            }
            for attempt in routed.attempts
        ],
    }


# bench -----------------------------------------------------------------------------------


def _bench(args: argparse.Namespace) -> int:
    from . import _bench as bench

    directory = args.dir if args.dir is not None else _BENCH_DIR
    try:
        return bench.run_all(directory, args.names, write=args.write, as_json=args.json)
    except bench.BenchError as exc:
        raise _UsageError(str(exc)) from None


# The parser ------------------------------------------------------------------------------


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    """Reports bad usage in one line that points at the help, instead of the usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(_USAGE_ERROR, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Formatter(argparse.HelpFormatter):
    """Wraps each paragraph of a description or epilog on its own."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n\n".join(
            super(_Formatter, self)._fill_text(paragraph, width, indent)
            for paragraph in text.split("\n\n")
        )


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number above 0, got {text!r}")
    return int(text)


def _parser() -> argparse.ArgumentParser:
    connection = _Parser(add_help=False)
    group = connection.add_argument_group("connection")
    group.add_argument(
        "--base-url", metavar="URL", help=f"the API's address (default: ${ENV_BASE_URL})"
    )
    group.add_argument("--pool", metavar="POOL", help=f"the pool to use (default: ${ENV_POOL_ID})")
    group.add_argument(
        "--timeout",
        type=_positive_seconds,
        metavar="SECONDS",
        help="how long each request may take (default: the SDK's)",
    )
    output = _Parser(add_help=False)
    output.add_argument("--json", action="store_true", help="print JSON instead of text")

    parser = _Parser(
        prog=_PROG,
        description="Rent GPUs from HostedAI pools: inspect the service, clean up held GPUs, "
        "run a routed inference, serve the emulator, run the benchmarks.",
        epilog=_EPILOG,
        formatter_class=_Formatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {harpoon.__version__}")
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    def command(
        name: str,
        help: str,
        parents: Sequence[_Parser] = (),
        details: str = "",
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help,
            description=f"{help[0].upper()}{help[1:]}. {details}".rstrip(),
            epilog=_EPILOG,
            formatter_class=_Formatter,
            parents=parents,
        )
        sub.set_defaults(prog=sub.prog)
        return sub

    # Parsed by the emulator's own command line (python -m hostedai_harpoon.testing).
    emulator = commands.add_parser(
        "emulator",
        help="serve the HostedAI API emulator on a local port until interrupted",
        add_help=False,
    )
    emulator.set_defaults(run=None, prog=emulator.prog)

    api = [connection, output]
    health = command("health", "the service's health; exit status 1 when degraded", api)
    health.set_defaults(run=_with_client(_health))
    pools = command("pools", "the pools, their free GPUs and their models", api)
    pools.set_defaults(run=_with_client(_pools))

    allocations = commands.add_parser(
        "allocations",
        help="list or release allocations (GPUs bill until released)",
        description="List or release allocations. A GPU nobody released keeps billing "
        "until its TTL runs out: release it here.",
    )
    actions = allocations.add_subparsers(title="actions", metavar="ACTION", required=True)
    listing = actions.add_parser(
        "list",
        parents=api,
        help="the allocations holding GPUs (in --pool, else in every pool)",
        description="The allocations holding GPUs, in --pool (or $HOSTED_AI_POOL_ID), else "
        "in every pool. The API lists only allocations that hold GPUs: released, expired "
        "and failed ones are never listed.",
        epilog=_EPILOG,
        formatter_class=_Formatter,
    )
    listing.add_argument(
        "--all-states",
        action="store_true",
        help="also list the allocations being released (status releasing; by default only "
        "pending and ready ones are listed)",
    )
    listing.set_defaults(run=_with_client(_list_allocations), prog=listing.prog)
    release = actions.add_parser(
        "release",
        parents=api,
        help="release allocations by id, or every one with --all",
        description="Release allocations by id, or every allocation holding GPUs (in --pool, "
        "else in every pool) with --all. An id that does not exist is an error; one "
        "already released, expired or failed is reported as such.",
        epilog=_EPILOG,
        formatter_class=_Formatter,
    )
    which = release.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "ids", nargs="*", default=[], metavar="ID", help="the allocations to release"
    )
    which.add_argument("--all", action="store_true", help="release every allocation holding GPUs")
    release.set_defaults(run=_with_client(_release_allocations), prog=release.prog)

    infer = command(
        "infer",
        "route TEXT to a target through the Orchestrator and print the decision, its reason "
        "and the answer",
        api,
        "The Orchestrator leases a GPU for the target (the routing policy is "
        "ComplexityPolicy over the default targets) and releases it before the command "
        "exits, Ctrl-C included.",
    )
    infer.add_argument("text", metavar="TEXT", help="the prompt")
    infer.add_argument(
        "--target",
        choices=[target.name for target in harpoon.DEFAULT_TARGETS],
        help="pin the request to this target instead of letting the policy choose",
    )
    infer.add_argument("--stream", action="store_true", help="print the answer as it comes")
    infer.add_argument(
        "--max-tokens",
        type=_positive_int,
        default=256,
        metavar="N",
        help="the most tokens to generate (default: 256)",
    )
    infer.set_defaults(run=_infer)

    bench = command(
        "bench",
        "run the benchmarks (every bench/*.py of the source tree), print their output, "
        "then the table of their figures",
        [output],
    )
    bench.add_argument("names", nargs="*", metavar="NAME", help="only these (e.g. routing)")
    bench.add_argument(
        "--dir", type=Path, help="the benchmarks' directory (default: bench/ of the source tree)"
    )
    bench.add_argument(
        "--write",
        type=Path,
        metavar="PAGE",
        help="also write the table into PAGE, between its table markers (as python "
        "bench/run_all.py does for docs/performance.md)",
    )
    bench.set_defaults(run=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``harpoon`` command with ``argv`` (default: ``sys.argv[1:]``); the exit status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    try:
        args, rest = parser.parse_known_args(argv)
        if args.run is None:
            from .testing.__main__ import main as serve_emulator

            return serve_emulator(rest, prog=args.prog)
        if any(arg == "--api-key" or arg.startswith("--api-key=") for arg in rest):
            # Named without its value: a key typed on a command line is already one too many
            # places, and the error must not copy it into a CI log as well.
            raise _UsageError(
                f"--api-key is not an option: set {ENV_API_KEY} (the key is not taken on "
                "the command line)"
            )
        if rest:
            parser.exit(
                _USAGE_ERROR,
                f"{args.prog}: error: unrecognized arguments: {' '.join(rest)} "
                f"(see {args.prog} --help)\n",
            )
        run: Callable[[argparse.Namespace], int] = args.run
        return run(args)
    except SystemExit as exit:
        return exit.code if isinstance(exit.code, int) else _USAGE_ERROR
    except (_UsageError, harpoon.ConfigurationError) as exc:
        print(f"{args.prog}: error: {_one_line(exc)}", file=sys.stderr)
        return _USAGE_ERROR
    except harpoon.HostedAIError as exc:
        print(f"{args.prog}: error: {_one_line(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{_PROG}: interrupted", file=sys.stderr)
        return _INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
