"""Benchmark figures: how a ``bench/`` script records them, and the table made of them.

A benchmark reports each figure with :func:`record`, which writes one JSON line to the file
named by ``HARPOON_BENCH_RESULTS`` (set by ``harpoon bench`` for each script it runs; unset,
``record`` does nothing, so a benchmark run by hand just prints). A figure is a ratio
against a baseline measured in the same run, or, where a benchmark has no baseline (memory
growth), an absolute value with its unit. :func:`render_table` makes the table that
``docs/performance.md`` shows, and :func:`write_table` puts it there.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterable, Mapping
from datetime import date
from pathlib import Path

import attrs

from ._version import __version__

RESULTS_ENV = "HARPOON_BENCH_RESULTS"
TABLE_START = "<!-- benchmark table: start (written by python bench/run_all.py) -->"
TABLE_END = "<!-- benchmark table: end -->"


class BenchError(Exception):
    """The benchmarks cannot be found, read or written: the message says why."""


@attrs.frozen
class Figure:
    """One figure a benchmark measured.

    ``unit`` is ``"ratio"`` for a ratio against ``baseline`` (measured in the same run),
    else the unit of an absolute value. ``target`` says what the figure should be (``None``
    for a figure shown for context) and ``passed`` whether it is.
    """

    name: str = attrs.field(validator=attrs.validators.instance_of(str))
    value: float = attrs.field(validator=attrs.validators.instance_of((int, float)))
    baseline: str = attrs.field(validator=attrs.validators.instance_of(str))
    unit: str = attrs.field(default="ratio", validator=attrs.validators.instance_of(str))
    target: str | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(str))
    )
    passed: bool | None = attrs.field(
        default=None, validator=attrs.validators.optional(attrs.validators.instance_of(bool))
    )


@attrs.frozen
class Run:
    """One benchmark script run: its exit status, output, duration and figures.

    ``script`` is its name as shown: ``bench/routing.py``.
    """

    script: str
    exit_status: int
    seconds: float
    output: str
    figures: tuple[Figure, ...]


def record(
    name: str,
    value: float,
    *,
    baseline: str,
    unit: str = "ratio",
    target: str | None = None,
    passed: bool | None = None,
) -> None:
    """Report a figure to the runner (a no-op when the benchmark runs by hand)."""
    path = os.environ.get(RESULTS_ENV)
    if not path:
        return
    figure = Figure(name, float(value), baseline, unit, target, passed)
    with open(path, "a", encoding="utf-8") as results:
        results.write(json.dumps(attrs.asdict(figure)) + "\n")


def parse_figures(text: str) -> tuple[Figure, ...]:
    """The figures in a results file's ``text``; ``BenchError`` for a line that is not one."""
    figures = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            fields = json.loads(line)
            figures.append(Figure(**fields))
        except (ValueError, TypeError) as exc:
            raise BenchError(f"line {number} of the results is not a figure: {exc}") from None
    return tuple(figures)


def describe_machine() -> dict[str, str]:
    """What the figures were measured on."""
    processor = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            models = [line.split(":", 1)[1].strip() for line in cpuinfo if "model name" in line]
        processor = models[0] if models else processor
    except OSError:
        pass
    return {
        "cpus": str(os.cpu_count() or "unknown"),
        "processor": processor,
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "harpoon": __version__,
    }


def _value(figure: Figure) -> str:
    if figure.unit != "ratio":
        return f"{figure.value:.2f} {figure.unit}"
    return f"{figure.value:.3f}" if figure.value >= 0.1 else f"{figure.value:.4f}"


def _verdict(figure: Figure) -> str:
    return "" if figure.passed is None else ("PASS" if figure.passed else "FAIL")


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_table(runs: Iterable[Run], machine: Mapping[str, str], day: date) -> str:
    """The Markdown that ``docs/performance.md`` shows: the machine, then one row a figure."""
    lines = [
        f"Measured on {day.isoformat()} with hostedai-harpoon {machine['harpoon']}: "
        f"{machine['cpus']} CPUs ({machine['processor']}), {machine['python']}, "
        f"{machine['platform']}.",
        "",
        "| benchmark | figure | result | against (same run) | target | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for run in runs:
        name = Path(run.script).stem
        if not run.figures:
            lines.append(f"| {name} | no figures (exit status {run.exit_status}) | | | | FAIL |")
        for figure in run.figures:
            baseline = figure.baseline if figure.unit == "ratio" else f"none: {figure.baseline}"
            lines.append(
                f"| {name} | {_cell(figure.name)} | {_value(figure)} | {_cell(baseline)} | "
                f"{_cell(figure.target or 'for context')} | {_verdict(figure)} |"
            )
    return "\n".join(lines) + "\n"


def check_page(page: Path) -> None:
    """Raise ``BenchError`` unless ``write_table`` can write into ``page``."""
    _split_page(page)


def _split_page(page: Path) -> tuple[str, str]:
    """The text of ``page`` up to its start marker included, and from its end marker on."""
    try:
        text = page.read_text(encoding="utf-8")
    except OSError as exc:
        raise BenchError(f"cannot read {page}: {exc.strerror or exc}") from None
    head, start, rest = text.partition(TABLE_START)
    _, end, tail = rest.partition(TABLE_END)
    if not start or not end:
        raise BenchError(f"{page} has no table markers: {TABLE_START} ... {TABLE_END}")
    return head + start, end + tail


def write_table(page: Path, table: str) -> None:
    """Replace what lies between the table markers of ``page`` with ``table``."""
    head, tail = _split_page(page)
    page.write_text(f"{head}\n{table}{tail}", encoding="utf-8")
