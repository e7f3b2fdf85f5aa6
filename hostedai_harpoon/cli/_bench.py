"""``harpoon bench``: run the source tree's benchmarks, then print (or write) their table."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

import attrs

from .. import _benchmarks as figures
from ._common import _BENCH_DIR, _print_json, _UsageError

# Not benchmarks: the script that runs them all, and helpers (a leading underscore).
_NOT_BENCHMARKS = frozenset({"run_all"})


def _bench_scripts(directory: Path, names: list[str]) -> list[Path]:
    if not directory.is_dir():
        raise _UsageError(
            f"no benchmarks: {directory} is not a directory (bench/ ships with the source "
            "tree, not with the installed package: run harpoon bench in a checkout, or pass "
            "--dir)"
        )
    scripts = {
        path.stem: path
        for path in sorted(directory.glob("*.py"))
        if not path.stem.startswith("_") and path.stem not in _NOT_BENCHMARKS
    }
    if not scripts:
        raise _UsageError(f"no benchmarks: {directory} holds no .py scripts")
    unknown = [name for name in names if name not in scripts]
    if unknown:
        raise _UsageError(
            f"no benchmark named {', '.join(unknown)} in {directory}; "
            f"there are: {', '.join(scripts)}"
        )
    return [scripts[name] for name in dict.fromkeys(names)] if names else list(scripts.values())


def _run_script(script: Path, echo: bool) -> figures.Run:
    """Run one benchmark, echoing its output as it comes, and gather the figures it records."""
    started = time.monotonic()
    output: list[str] = []
    with tempfile.TemporaryDirectory(prefix="harpoon-bench-") as scratch:
        results = Path(scratch) / "figures.jsonl"
        with subprocess.Popen(
            [sys.executable, str(script)],
            cwd=script.parent.parent,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env={**os.environ, figures.RESULTS_ENV: str(results)},
        ) as process:
            try:
                for line in process.stdout or ():
                    output.append(line)
                    if echo:
                        print(line, end="", flush=True)
            except BaseException:
                process.kill()
                raise
        try:
            recorded = figures.parse_figures(results.read_text("utf-8")) if results.exists() else ()
        except figures.BenchError as exc:
            raise _UsageError(f"{script.name}: {exc}") from None
    return figures.Run(
        f"{script.parent.name}/{script.name}",
        process.returncode,
        time.monotonic() - started,
        "".join(output),
        recorded,
    )


def _bench(args: argparse.Namespace) -> int:
    directory = args.dir if args.dir is not None else _BENCH_DIR
    write: Path | None = args.write
    if write is not None and args.names:
        raise _UsageError("--write records every benchmark: leave out the names")
    try:
        if write is not None:
            figures.check_page(write)  # before minutes of benchmarks, not after
        runs = []
        for script in _bench_scripts(directory, args.names):
            if not args.json:
                print(f"== {directory.name}/{script.name}", flush=True)
            run = _run_script(script, echo=not args.json)
            runs.append(run)
            if not args.json:
                verdict = (
                    "ok" if run.exit_status == 0 else f"FAILED (exit status {run.exit_status})"
                )
                print(f"== {run.script}: {verdict} in {run.seconds:.1f}s\n", flush=True)
        table = figures.render_table(runs, figures.describe_machine(), date.today())
        if write is not None:
            figures.write_table(write, table)
    except figures.BenchError as exc:
        raise _UsageError(str(exc)) from None
    if args.json:
        _print_json(
            [
                {
                    "script": run.script,
                    "exit_status": run.exit_status,
                    "seconds": run.seconds,
                    "output": run.output,
                    "figures": [attrs.asdict(figure) for figure in run.figures],
                }
                for run in runs
            ]
        )
    else:
        print(table, end="")
        if write is not None:
            print(f"\nwritten to {write}")
    return 0 if all(run.exit_status == 0 for run in runs) else 1
