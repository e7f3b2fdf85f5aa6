"""``harpoon bench``: run the source tree's benchmarks."""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

import hostedai_harpoon as harpoon

from ._common import _BENCH_DIR, _print_json, _UsageError

ClientT = TypeVar("ClientT", harpoon.HostedAI, harpoon.AsyncHostedAI)

# bench -----------------------------------------------------------------------------------


def _bench_scripts(directory: Path, names: Sequence[str]) -> list[Path]:
    if not directory.is_dir():
        raise _UsageError(
            f"no benchmarks: {directory} is not a directory (bench/ ships with the source "
            "tree, not with the installed package: run harpoon bench in a checkout, or pass "
            "--dir)"
        )
    scripts = {path.stem: path for path in sorted(directory.glob("*.py"))}
    if not scripts:
        raise _UsageError(f"no benchmarks: {directory} holds no .py scripts")
    unknown = [name for name in names if name not in scripts]
    if unknown:
        raise _UsageError(
            f"no benchmark named {', '.join(unknown)} in {directory}; "
            f"there are: {', '.join(scripts)}"
        )
    return [scripts[name] for name in dict.fromkeys(names)] if names else list(scripts.values())


def _run_script(script: Path, echo: bool) -> tuple[int, str, float]:
    """Run one benchmark, echoing its output as it comes; its exit status, output, seconds."""
    started = time.monotonic()
    output: list[str] = []
    with subprocess.Popen(
        [sys.executable, str(script)],
        cwd=script.parent.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    ) as process:
        try:
            for line in process.stdout or ():
                output.append(line)
                if echo:
                    print(line, end="", flush=True)
        except BaseException:
            process.kill()
            raise
    return process.returncode, "".join(output), time.monotonic() - started


def _bench(args: argparse.Namespace) -> int:
    directory = args.dir if args.dir is not None else _BENCH_DIR
    results = []
    for script in _bench_scripts(directory, args.names):
        name = f"{directory.name}/{script.name}"
        if not args.json:
            print(f"== {name}", flush=True)
        status, output, seconds = _run_script(script, echo=not args.json)
        results.append(
            {"script": name, "exit_status": status, "seconds": seconds, "output": output}
        )
        if not args.json:
            verdict = "ok" if status == 0 else f"FAILED (exit status {status})"
            print(f"== {name}: {verdict} in {seconds:.1f}s\n", flush=True)
    if args.json:
        _print_json(results)
    return 0 if all(result["exit_status"] == 0 for result in results) else 1
