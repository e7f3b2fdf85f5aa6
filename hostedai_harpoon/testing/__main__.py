"""``python -m hostedai_harpoon.testing``: serve the emulator on a TCP port until interrupted."""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence

from ._emulator import Emulator
from ._faults import FaultPlan
from ._serve import base_url, bind, make_server


def _pools(text: str) -> dict[str, int]:
    pools = {}
    for item in text.split(","):
        pool_id, sep, gpus = item.partition("=")
        if not sep or not pool_id.strip() or not gpus.strip().isdigit():
            raise argparse.ArgumentTypeError(f"expected POOL=GPUS[,POOL=GPUS...], got {text!r}")
        pools[pool_id.strip()] = int(gpus)
    return pools


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line options."""
    parser = argparse.ArgumentParser(
        prog="python -m hostedai_harpoon.testing",
        description="Serve the HostedAI API emulator over HTTP.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8080, help="port (0: any free port)")
    parser.add_argument("--pools", type=_pools, help="pools as POOL=GPUS,... (first: default)")
    parser.add_argument("--api-key", action="append", help="accept only this key (repeatable)")
    parser.add_argument("--ready-delay", type=float, default=0.0, help="seconds until ready")
    parser.add_argument("--ttl", type=int, default=600, help="default allocation TTL (seconds)")
    parser.add_argument("--latency-scale", type=float, default=0.0, help="real share of latency")
    parser.add_argument("--stream-chunk-delay", type=float, default=0.0, help="seconds per event")
    parser.add_argument("--seed", type=int, default=0, help="seed for ids and faults")
    for kind in ("error", "rate-limit", "latency", "drop", "malformed", "truncate"):
        parser.add_argument(f"--{kind}-rate", type=float, default=0.0, help=f"{kind} fault rate")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve until SIGINT or SIGTERM; print the URL first."""
    args = parse_args(argv)
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
    )
    server = make_server(emulator.asgi_app)
    sock = bind(args.host, args.port)
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
