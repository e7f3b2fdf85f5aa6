"""The argument parser and ``main()``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

import hostedai_harpoon as harpoon

from .._config import ENV_API_KEY, ENV_BASE_URL, ENV_POOL_ID
from ._api import (
    _health,
    _list_allocations,
    _pools,
    _reconcile,
    _release_allocations,
    _with_client,
)
from ._bench import _bench
from ._common import (
    _EPILOG,
    _EXIT_STATUS,
    _INTERRUPTED,
    _PROG,
    _USAGE_ERROR,
    _Failure,
    _Masked,
    _report_error,
    _UsageError,
)
from ._infer import _infer

# The parser ------------------------------------------------------------------------------


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


class _BadUsage(Exception):
    """What the parser found wrong with the command line, and the (sub)command it was for."""

    def __init__(self, prog: str, message: str) -> None:
        super().__init__(f"{message} (see {prog} --help)")
        self.prog = prog


class _Parser(argparse.ArgumentParser):
    """Reports bad usage in one line that points at the help, instead of the usage text."""

    def error(self, message: str) -> NoReturn:
        raise _BadUsage(self.prog, message)


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
    group.add_argument(
        "--allow-insecure-http",
        action="store_true",
        help="accept a plain http:// address that is not loopback (the API key then crosses "
        "the network unencrypted)",
    )
    output = _Parser(add_help=False)
    output.add_argument(
        "--json",
        action="store_true",
        help="print JSON instead of text, a failure too (an error object on stdout)",
    )

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
        epilog: str = _EPILOG,
    ) -> argparse.ArgumentParser:
        sub = commands.add_parser(
            name,
            help=help,
            description=f"{help[0].upper()}{help[1:]}. {details}".rstrip(),
            epilog=epilog,
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
    health = command(
        "health",
        "the service's health and whether it accepts the API key; exit status 1 when "
        "degraded or when the key is refused",
        api,
        "The health check itself needs no key, so the command also makes one authenticated "
        'call (it lists the pools): an answer of 401 or 403 is reported as "key refused".',
    )
    health.set_defaults(run=_with_client(_health, checks_pool=True))
    pools = command(
        "pools",
        "the pools, their free GPUs and their models",
        api,
        "Every pool, or only the one --pool names (an unknown pool is an error); "
        f"${ENV_POOL_ID} does not narrow the list.",
    )
    pools.set_defaults(run=_with_client(_pools, checks_pool=True))

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
        "in every pool; a pool that does not exist is an error. The API lists only "
        "allocations that hold GPUs: released, expired and failed ones are never listed.",
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
        "else in every pool) with --all. An id or a pool that does not exist is an error; "
        "an allocation already released, expired or failed is reported as such.",
        epilog=_EPILOG,
        formatter_class=_Formatter,
    )
    which = release.add_mutually_exclusive_group(required=True)
    which.add_argument(
        "ids", nargs="*", default=[], metavar="ID", help="the allocations to release"
    )
    which.add_argument("--all", action="store_true", help="release every allocation holding GPUs")
    release.set_defaults(run=_with_client(_release_allocations), prog=release.prog)
    reconcile = actions.add_parser(
        "reconcile",
        parents=api,
        help="release what this client's ledger owns and no live process holds",
        description="On hosted·ai's platform (HOSTED_AI_DIALECT=gpuaas), release this team's "
        "subscriptions that this machine's ledger says a process of this user made and that "
        "no running process holds (there is no server TTL: a killed process leaves them "
        "billing). Other teams' subscriptions are never touched. On v1: nothing to do.",
        epilog=_EPILOG,
        formatter_class=_Formatter,
    )
    reconcile.set_defaults(run=_with_client(_reconcile), prog=reconcile.prog)

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
    infer.add_argument(
        "--endpoint",
        metavar="URL",
        help="send TEXT to this running OpenAI-compatible server (vLLM and friends) instead: "
        "no Orchestrator, no allocation (its key, if any: $HOSTED_AI_ENDPOINT_API_KEY)",
    )
    infer.add_argument(
        "--model", metavar="NAME", help="with --endpoint: the model (default: its first one)"
    )
    infer.set_defaults(run=_infer)

    bench = command(
        "bench",
        "run the benchmarks (every bench/*.py of the source tree), print their output, "
        "then the table of their figures",
        [output],
        "Each figure is a ratio against a baseline measured in the same run (or an "
        "absolute figure with its unit, where there is no baseline); the table describes "
        "the machine.",
        epilog=_EXIT_STATUS,
    )
    bench.add_argument("names", nargs="*", metavar="NAME", help="only these (e.g. routing)")
    bench.add_argument(
        "--dir", type=Path, help="the benchmarks' directory (default: bench/ of the source tree)"
    )
    bench.add_argument(
        "--write",
        type=Path,
        metavar="PAGE",
        help="also write the table into PAGE, between its table markers (python "
        "bench/run_all.py writes docs/performance.md so)",
    )
    bench.set_defaults(run=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``harpoon`` command with ``argv`` (default: ``sys.argv[1:]``); the exit status.
    Nothing it prints shows the API key (``_Masked``)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    stdout, stderr = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = _Masked(stdout), _Masked(stderr)
    try:
        return _run(argv)
    finally:
        sys.stdout, sys.stderr = stdout, stderr


def _run(argv: list[str]) -> int:
    # Known before parsing, so that a command line the parser refuses is reported in JSON too.
    as_json = "--json" in (argv[: argv.index("--")] if "--" in argv else argv)
    prog = _PROG
    parser = _parser()
    try:
        args, rest = parser.parse_known_args(argv)
        prog = args.prog
        if args.run is None:
            from ..testing.__main__ import main as serve_emulator

            return serve_emulator(rest, prog=args.prog, one_line_errors=True)
        if any(arg == "--api-key" or arg.startswith("--api-key=") for arg in rest):
            # Named without its value: a key typed on a command line is already one too many
            # places, and the error must not copy it into a CI log as well.
            raise _UsageError(
                f"--api-key is not an option: set {ENV_API_KEY} (the key is not taken on "
                "the command line)"
            )
        if rest:
            raise _BadUsage(args.prog, f"unrecognized arguments: {' '.join(rest)}")
        run: Callable[[argparse.Namespace], int] = args.run
        return run(args)
    except SystemExit as exit:  # --help, --version
        return exit.code if isinstance(exit.code, int) else _USAGE_ERROR
    except _BadUsage as exc:
        return _report_error(exc.prog, exc, _USAGE_ERROR, as_json, "UsageError")
    except (_UsageError, harpoon.ConfigurationError) as exc:
        return _report_error(prog, exc, _USAGE_ERROR, as_json)
    except (harpoon.HostedAIError, _Failure) as exc:
        return _report_error(prog, exc, 1, as_json)
    except KeyboardInterrupt:
        if as_json:
            return _report_error(_PROG, "interrupted", _INTERRUPTED, True, "KeyboardInterrupt")
        print(f"{_PROG}: interrupted", file=sys.stderr)
        return _INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
