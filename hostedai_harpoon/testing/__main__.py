"""``python -m hostedai_harpoon.testing``: serve the emulator on a TCP port until interrupted."""

from __future__ import annotations

import argparse
import errno
import signal
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from ._emulator import Emulator
from ._faults import FaultPlan
from ._serve import UVICORN_MISSING, base_url, bind, make_server

_PROG = "python -m hostedai_harpoon.testing"
_FAULTS = (
    ("error", "a 5xx error"),
    ("rate-limit", "a 429 with Retry-After"),
    ("latency", "a delayed answer"),
    ("drop", "a dropped connection"),
    ("malformed", "a body that is not JSON"),
    ("truncate", "a JSON body cut short"),
)


def _pools(text: str) -> dict[str, int]:
    pools = {}
    for item in text.split(","):
        pool_id, sep, gpus = item.partition("=")
        if not sep or not pool_id.strip() or not gpus.strip().isdigit():
            raise argparse.ArgumentTypeError(f"expected POOL=GPUS[,POOL=GPUS...], got {text!r}")
        pools[pool_id.strip()] = int(gpus)
    return pools


def _port(text: str) -> int:
    if not text.isdigit() or int(text) > 65535:
        raise argparse.ArgumentTypeError(f"expected a port from 0 to 65535, got {text!r}")
    return int(text)


def _ttl(text: str) -> int | None:
    if text.strip().lower() == "none":
        return None
    if not text.strip().isdigit() or not 1 <= int(text) <= 86400:
        raise argparse.ArgumentTypeError(
            f"expected seconds from 1 to 86400, or 'none' for no expiry, got {text!r}"
        )
    return int(text)


def _number(expected: str, maximum: float = float("inf")) -> Callable[[str], float]:
    """An option's type: a number from 0 up to ``maximum`` (excluded when infinite)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = -1.0
        if not (0 <= value <= maximum and value < float("inf")):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_seconds = _number("a number of seconds from 0")
_share = _number("a number from 0")
_rate = _number("a share of requests from 0 to 1", 1.0)


class _OneLineErrors(argparse.ArgumentParser):
    """Reports bad options in one line that points at the help, instead of the usage text."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def parse_args(
    argv: Sequence[str] | None = None, *, prog: str = _PROG, one_line_errors: bool = False
) -> argparse.Namespace:
    """The command line options; ``prog`` is the command's name in help and errors.

    ``one_line_errors=True`` reports a bad option in one line instead of after the usage.
    """
    parser_class = _OneLineErrors if one_line_errors else argparse.ArgumentParser
    parser = parser_class(
        prog=prog,
        description=(
            "Serve the HostedAI API emulator over HTTP. Needs uvicorn, which the 'emulator' "
            "extra installs: pip install 'hostedai-harpoon[emulator]'."
        ),
    )
    parser.add_argument(
        "--host", default="127.0.0.1", help="address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=_port, default=8080, help="port, 0 for any free one (default: %(default)s)"
    )
    parser.add_argument(
        "--pools",
        type=_pools,
        metavar="POOL=GPUS,...",
        help="the pools and their GPUs, the first the default (default: gpu-pool-1=8)",
    )
    parser.add_argument(
        "--api-key",
        action="append",
        metavar="KEY",
        help="accept only this key; repeatable (default: accept any key)",
    )
    parser.add_argument(
        "--ready-delay",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="how long an allocation stays pending (default: %(default)s)",
    )
    parser.add_argument(
        "--ttl",
        type=_ttl,
        default=600,
        help="default allocation TTL: seconds from 1 to 86400, or 'none' for no expiry "
        "(default: %(default)s)",
    )
    parser.add_argument(
        "--latency-scale",
        type=_share,
        default=0.0,
        metavar="SHARE",
        help="share of the modelled latency really waited (default: %(default)s)",
    )
    parser.add_argument(
        "--stream-chunk-delay",
        type=_seconds,
        default=0.0,
        metavar="SECONDS",
        help="wait between streamed events (default: %(default)s)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed for ids and faults (default: %(default)s)"
    )
    parser.add_argument(
        "--dialect",
        choices=("v1", "gpuaas"),
        default="v1",
        help="the API to speak: v1, or hosted·ai's platform (gpuaas; clients then take "
        "dialect='gpuaas' and a team_id) (default: %(default)s)",
    )
    for kind, fault in _FAULTS:
        parser.add_argument(
            f"--{kind}-rate",
            type=_rate,
            default=0.0,
            metavar="RATE",
            help=f"share of requests that get {fault}, from 0 to 1 (default: %(default)s)",
        )
    return parser.parse_args(argv)


def main(
    argv: Sequence[str] | None = None, *, prog: str = _PROG, one_line_errors: bool = False
) -> int:
    """Serve until SIGINT or SIGTERM; print the URL first.

    ``prog`` names the command in help and errors (``harpoon emulator`` runs this too).
    ``one_line_errors=True`` reports every error as one ``PROG: error: ...`` line.
    Exit status 2 for bad options or a missing uvicorn, 1 when the address cannot be bound.
    """

    def _fail(message: str, status: int) -> int:
        if one_line_errors and not message.startswith(f"{prog}: error: "):
            message = f"{prog}: error: {message}"
        print(message, file=sys.stderr)
        return status

    args = parse_args(argv, prog=prog, one_line_errors=one_line_errors)
    rates = {
        f"--{kind}-rate": getattr(args, f"{kind.replace('-', '_')}_rate") for kind, _ in _FAULTS
    }
    if sum(rates.values()) > 1:
        given = ", ".join(f"{option} {rate:g}" for option, rate in rates.items() if rate)
        return _fail(f"{prog}: error: the fault rates add up to more than 1 ({given})", 2)
    try:
        faults = FaultPlan(
            error_rate=args.error_rate,
            rate_limit_rate=args.rate_limit_rate,
            latency_rate=args.latency_rate,
            drop_rate=args.drop_rate,
            malformed_rate=args.malformed_rate,
            truncate_rate=args.truncate_rate,
            seed=args.seed,
        )
        emulator = Emulator(
            args.pools,
            faults=faults,
            ready_delay=args.ready_delay,
            default_ttl=args.ttl,
            api_keys=args.api_key,
            seed=args.seed,
            latency_scale=args.latency_scale,
            stream_chunk_delay=args.stream_chunk_delay,
            dialect=args.dialect,
        )
    except ValueError as exc:
        return _fail(f"{prog}: error: {exc}", 2)
    try:
        server = make_server(emulator.asgi_app)
    except ImportError as exc:
        if exc.name != "uvicorn":
            raise
        return _fail(UVICORN_MISSING, 2)
    try:
        sock = bind(args.host, args.port)
    except OSError as exc:
        where = f"{args.host}:{args.port}"
        if exc.errno == errno.EADDRINUSE:
            return _fail(f"cannot serve the emulator on {where}: the port is already in use", 1)
        return _fail(f"cannot serve the emulator on {where}: {exc.strerror or exc}", 1)
    print(f"HostedAI emulator serving on {base_url(sock)}", flush=True)
    # uvicorn re-raises the signal it stopped on; make SIGTERM end as quietly as SIGINT.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:
        pass
    finally:
        sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
