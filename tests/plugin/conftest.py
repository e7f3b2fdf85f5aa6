"""The plugin's tests run on both control-plane dialects (tests/dialects.py): a test that
takes ``dialect`` runs its inner pytest once with ``--hostedai-dialect=v1`` and once with
``--hostedai-dialect=gpuaas``; what an inner test names (paths, the default pool, a raw
request that leaks a GPU, the leak report) comes from ``FACTS[dialect]``.

The inner pytest runs are in-process: pytester drops every module first imported during one
when it ends. httpx imports httpcore lazily and keeps a map of httpcore's exception classes,
so an httpcore first imported inside an inner run would come back as a second copy whose
errors that map no longer recognises. Import it before any inner run.
"""

from __future__ import annotations

import textwrap

import httpcore  # noqa: F401
import pytest

from tests.dialects import PATHS, parametrize_dialects

FACTS = {
    "v1": {
        "DIALECT": "v1",
        "POOL": "gpu-pool-1",
        "HEALTH": "/v1/health",
        "HEALTH_QUERY": {},
        "AUTH": {"Authorization": "Bearer k"},
        "LEAK_PATH": PATHS["v1"].create[1],
        "LEAK_BODY": {"model": "gemma-3-270m"},
        "RELEASE": PATHS["v1"].release,
        "INFERENCE": PATHS["v1"].inference,
    },
    "gpuaas": {
        "DIALECT": "gpuaas",
        "POOL": "101",
        "HEALTH": "/api/gpuaas/available-pools",
        "HEALTH_QUERY": {"team_id": "team-raw"},
        "AUTH": {"X-API-Key": "k"},
        "LEAK_PATH": PATHS["gpuaas"].create[1],
        "LEAK_BODY": {"pool_id": 101, "team_id": "team-raw", "vgpus": 1},
        "RELEASE": PATHS["gpuaas"].release,
        "INFERENCE": PATHS["gpuaas"].inference,
    },
}
"""What the inner tests of each dialect name, as constants they see."""

LEAK_REPORTS = {
    "v1": "*1 allocation(s) left live on the HostedAI emulator (v1): alloc_* (gemma-3-270m, "
    "1 GPU, ready, pool gpu-pool-1). Release every allocation*",
    "gpuaas": "*1 subscription(s) left live on the HostedAI emulator (gpuaas): subscription "
    "1001 (pool 101, team *, 1 vGPU, subscribed, pod pod-1001). Release every allocation*",
}
"""The line the leak check reports for one GPU leaked in the default pool."""


def constants(dialect: str) -> str:
    """Python source defining ``FACTS[dialect]`` as module constants of an inner test."""
    return "".join(f"{name} = {value!r}\n" for name, value in FACTS[dialect].items())


def run_inner(
    pytester: pytest.Pytester, source: str, *args: str, dialect: str | None = None
) -> pytest.RunResult:
    """Run ``source`` as the test module of an inner pytest; with a ``dialect``, on that
    dialect (``--hostedai-dialect``), the module seeing its facts (conftest.FACTS) as
    constants; without, with no option at all."""
    header, option = "", []
    if dialect is not None:
        header, option = constants(dialect), [f"--hostedai-dialect={dialect}"]
    pytester.makepyfile(test_user=header + textwrap.dedent(source))
    # The option only quiets pytest-asyncio's warning that the inner run does not set it.
    return pytester.runpytest_inprocess(
        "-p",
        "no:cacheprovider",
        "--strict-markers",
        "-o",
        "asyncio_default_fixture_loop_scope=function",
        *option,
        *args,
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    parametrize_dialects(metafunc)
