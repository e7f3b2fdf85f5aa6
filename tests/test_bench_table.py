"""The benchmarks together: figures recorded by a benchmark, and the table made of them.

The benchmarks themselves are too slow for the suite; these run the runner on stand-ins.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from hostedai_harpoon import _benchmarks as bench
from hostedai_harpoon._benchmarks import Figure, Run
from hostedai_harpoon.cli import main

ROOT = Path(__file__).resolve().parent.parent
MACHINE = {
    "cpus": "2",
    "processor": "Test CPU",
    "python": "CPython 3.11.9",
    "platform": "Linux-6.1-x86_64",
    "harpoon": "0.1.0",
}


def a_run(name: str, *figures: Figure, exit_status: int = 0) -> Run:
    return Run(f"bench/{name}.py", exit_status, 1.0, "", figures)


def test_the_table_describes_the_machine_then_has_a_row_per_figure() -> None:
    runs = [
        a_run(
            "client_overhead",
            Figure("infer per call", 1.0625, "raw httpx", target="<= 1.15", passed=True),
            Figure("import", 1.5, "import httpx", target="<= 1.35", passed=False),
        ),
        a_run("routing", Figure("CostPolicy: route()", 0.00421, "one httpx call")),
        a_run(
            "memory",
            Figure("leases", 1.234, "absolute growth", unit="MiB", target="< 5 MiB", passed=True),
        ),
        a_run("broken", exit_status=1),
    ]
    table = bench.render_table(runs, MACHINE, date(2026, 11, 29))
    assert table.splitlines() == [
        "Measured on 2026-11-29 with hostedai-harpoon 0.1.0: 2 CPUs (Test CPU), "
        "CPython 3.11.9, Linux-6.1-x86_64.",
        "",
        "| benchmark | figure | result | against (same run) | target | verdict |",
        "|---|---|---|---|---|---|",
        "| client_overhead | infer per call | 1.062 | raw httpx | <= 1.15 | PASS |",
        "| client_overhead | import | 1.500 | import httpx | <= 1.35 | FAIL |",
        "| routing | CostPolicy: route() | 0.0042 | one httpx call | for context |  |",
        "| memory | leases | 1.23 MiB | none: absolute growth | < 5 MiB | PASS |",
        "| broken | no figures (exit status 1) | | | | FAIL |",
    ]


def test_a_pipe_in_a_name_does_not_split_the_row() -> None:
    table = bench.render_table(
        [a_run("x", Figure("a | b", 1.0, "c | d"))], MACHINE, date(2026, 1, 1)
    )
    assert "| x | a \\| b | 1.000 | c \\| d | for context |  |" in table


def test_a_benchmark_records_its_figures_for_the_runner(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "bench" / "stand_in.py"
    script.parent.mkdir()
    script.write_text(
        "from hostedai_harpoon._benchmarks import record\n"
        "print('measuring')\n"
        "record('call', 1.1, baseline='raw httpx', target='<= 1.2', passed=True)\n"
        "record('rss', 2.5, baseline='absolute growth', unit='MiB')\n"
    )
    assert main(["bench", "--dir", str(script.parent), "--json"]) == 0
    (run,) = json.loads(capsys.readouterr().out)
    assert (run["script"], run["exit_status"], run["output"]) == (
        "bench/stand_in.py",
        0,
        "measuring\n",
    )
    assert [Figure(**figure) for figure in run["figures"]] == [
        Figure("call", 1.1, "raw httpx", target="<= 1.2", passed=True),
        Figure("rss", 2.5, "absolute growth", unit="MiB"),
    ]


def test_a_benchmark_recording_garbage_is_one_error_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "bench" / "garbage.py"
    script.parent.mkdir()
    script.write_text(
        "import os\n"
        "with open(os.environ['HARPOON_BENCH_RESULTS'], 'w') as f:\n"
        "    f.write('not json\\n')\n"
    )
    assert main(["bench", "--dir", str(script.parent)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("harpoon bench: error: garbage.py: line 1 of the results is not a ")
    assert err.count("\n") == 1


def test_record_does_nothing_when_run_by_hand(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from hostedai_harpoon._benchmarks import record; record('x', 1.0, baseline='y')",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin"},
    )
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    "line",
    [
        "not json",
        '{"name": "x"}',
        '{"name": "x", "value": "1.0", "baseline": "y"}',
        '{"name": "x", "value": 1.0, "baseline": "y", "colour": "red"}',
        '{"name": "x", "value": 1.0, "baseline": "y", "passed": "yes"}',
    ],
)
def test_a_results_line_that_is_not_a_figure_is_a_bench_error(line: str) -> None:
    with pytest.raises(bench.BenchError, match="line 2 of the results is not a figure"):
        bench.parse_figures('{"name": "ok", "value": 1, "baseline": "b"}\n' + line)


def test_writing_replaces_only_what_lies_between_the_markers(tmp_path: Path) -> None:
    page = tmp_path / "performance.md"
    page.write_text(f"intro\n{bench.TABLE_START}\nold\n{bench.TABLE_END}\noutro\n")
    bench.write_table(page, "| new |\n")
    assert page.read_text() == f"intro\n{bench.TABLE_START}\n| new |\n{bench.TABLE_END}\noutro\n"
    bench.write_table(page, "| newer |\n")
    assert page.read_text().count("|") == 2


@pytest.mark.parametrize("text", ["no markers", f"only the start {bench.TABLE_START}"])
def test_a_page_without_both_markers_is_refused(tmp_path: Path, text: str) -> None:
    page = tmp_path / "performance.md"
    page.write_text(text)
    with pytest.raises(bench.BenchError, match="has no table markers"):
        bench.write_table(page, "| new |\n")
    assert page.read_text() == text


def test_the_runner_and_helpers_are_not_benchmarks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("run_all", "_helpers", "routing", "memory"):
        (tmp_path / f"{name}.py").write_text("")
    assert main(["bench", "--dir", str(tmp_path), "--json"]) == 0
    runs = json.loads(capsys.readouterr().out)
    assert [run["script"] for run in runs] == [
        f"{tmp_path.name}/memory.py",
        f"{tmp_path.name}/routing.py",
    ]


def test_the_machine_is_described_by_what_the_table_needs() -> None:
    machine = bench.describe_machine()
    assert set(machine) == set(MACHINE)
    assert int(machine["cpus"]) >= 1
    assert machine["python"].endswith(sys.version.split()[0])


def test_the_performance_page_has_the_markers_and_every_benchmark_records() -> None:
    page = (ROOT / "docs" / "performance.md").read_text(encoding="utf-8")
    assert page.index(bench.TABLE_START) < page.index(bench.TABLE_END)
    scripts = [
        path
        for path in sorted((ROOT / "bench").glob("*.py"))
        if path.stem != "run_all" and not path.stem.startswith("_")
    ]
    assert len(scripts) >= 5
    for script in scripts:
        assert "record(" in script.read_text(encoding="utf-8"), script.name
        assert f"bench/{script.name}" in page
