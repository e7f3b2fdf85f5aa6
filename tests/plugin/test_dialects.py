"""Choosing the plugin's dialect: the marker for a test, ``--hostedai-dialect`` or the
``hostedai_dialect`` ini setting for a run, an overridden ``hostedai_dialect`` fixture for
both; and what a gpuaas test never touches (the user's cache, the shell's variables)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.plugin.conftest import run_inner

pytest_plugins = ["pytester"]

SPEAKS_GPUAAS = """
import pytest

def test_speaks_gpuaas(hostedai_dialect, hostedai_emulator, hostedai_client, hostedai_orchestrator):
    assert hostedai_dialect == hostedai_emulator.dialect == "gpuaas"
    assert hostedai_client.dialect == hostedai_orchestrator.client.dialect == "gpuaas"
    assert hostedai_client.team_id == "test-team"
    with hostedai_client.allocate(model="gemma-3-270m") as lease:
        assert lease.infer("Hi").text
    assert hostedai_emulator.requests_to("POST", "/api/gpuaas/pool/unsubscribe")
"""


def test_the_emulator_marker_makes_a_test_gpuaas_whatever_the_run_says(
    pytester: pytest.Pytester,
) -> None:
    source = SPEAKS_GPUAAS.replace(
        "def test_", '@pytest.mark.hostedai_emulator(dialect="gpuaas")\ndef test_'
    )
    source += """
def test_the_others_stay_v1(hostedai_dialect, hostedai_client):
    assert hostedai_dialect == hostedai_client.dialect == "v1"
"""
    for option in ((), ("--hostedai-dialect=v1",)):
        run_inner(pytester, source, *option).assert_outcomes(passed=2)


def test_the_ini_setting_chooses_the_dialect_and_the_option_wins_over_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nhostedai_dialect = gpuaas\n")
    run_inner(pytester, SPEAKS_GPUAAS).assert_outcomes(passed=1)
    v1 = "def test_v1(hostedai_client):\n    assert hostedai_client.dialect == 'v1'\n"
    run_inner(pytester, v1, "--hostedai-dialect=v1").assert_outcomes(passed=1)


def test_an_overridden_dialect_fixture_runs_each_test_on_both(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        """
        import pytest

        @pytest.fixture(params=["v1", "gpuaas"])
        def hostedai_dialect(request):
            return request.param
        """
    )
    result = run_inner(
        pytester,
        """
        def test_lease(hostedai_dialect, hostedai_client, hostedai_emulator):
            assert hostedai_client.dialect == hostedai_emulator.dialect == hostedai_dialect
            with hostedai_client.allocate(model="gemma-3-270m") as lease:
                assert lease.infer("Hi").text
        """,
        "-v",
    )
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines(["*test_lease?v1? PASSED*", "*test_lease?gpuaas? PASSED*"])


def test_a_bad_ini_dialect_is_one_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nhostedai_dialect = gpuass\n")
    result = run_inner(pytester, "def test_it():\n    pass\n")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: the hostedai_dialect ini setting must be one of v1, gpuaas; got 'gpuass'"]
    )
    assert "Traceback" not in result.stderr.str()


def test_a_bad_option_dialect_is_refused_by_the_command_line(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, "def test_it():\n    pass\n", "--hostedai-dialect=v2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--hostedai-dialect: invalid choice: 'v2'*"])


def test_a_bad_overridden_dialect_fixture_errors_with_one_clear_line(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(
        "import pytest\n\n@pytest.fixture\ndef hostedai_dialect():\n    return 'v2'\n"
    )
    result = run_inner(pytester, "def test_it(hostedai_client):\n    pass\n")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(
        ["*the hostedai_dialect fixture must give one of v1, gpuaas; got 'v2'*"]
    )
    result.stdout.no_fnmatch_line("*Traceback*")


def test_a_gpuaas_test_keeps_its_ledger_under_tmp_path_and_ignores_the_shell(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The user's cache (where a gpuaas client keeps its ledger by default) and a shell set
    # up for another account: none of it may be touched or read by the fixtures.
    cache = tmp_path / "user-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.setenv("HOSTED_AI_TEAM_ID", "a-real-team")
    monkeypatch.setenv("HOSTED_AI_LEDGER_DIR", str(cache / "real-ledger"))
    monkeypatch.setenv("HOSTED_AI_POOL_ID", "a-real-pool")
    result = run_inner(
        pytester,
        """
        import asyncio
        import os

        import hostedai_harpoon as harpoon

        def test_clients(hostedai_client, hostedai_async_client):
            assert hostedai_client.team_id == hostedai_async_client.team_id == "test-team"
            with hostedai_client.allocate(model="gemma-3-270m") as lease:
                assert lease.allocation.pool_id == POOL

            async def lease_async():
                async with hostedai_async_client.allocate(model="gemma-3-270m") as lease:
                    return (await lease.infer("Hi")).text

            assert asyncio.run(lease_async())

        def test_env(hostedai_env, tmp_path):
            assert os.environ["HOSTED_AI_TEAM_ID"] == "test-team"
            assert os.environ["HOSTED_AI_LEDGER_DIR"].startswith(str(tmp_path))
            assert "HOSTED_AI_POOL_ID" not in os.environ
            with harpoon.HostedAI() as client:
                with client.allocate(model="gemma-3-270m") as lease:
                    assert lease.allocation.pool_id == POOL
        """,
        dialect="gpuaas",
    )
    result.assert_outcomes(passed=2)
    assert not cache.exists(), sorted(cache.rglob("*"))


def test_a_v1_test_ignores_a_shell_set_up_for_gpuaas(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOSTED_AI_DIALECT", "gpuaas")
    monkeypatch.setenv("HOSTED_AI_TEAM_ID", "a-real-team")
    result = run_inner(
        pytester,
        """
        import os

        import hostedai_harpoon as harpoon

        def test_env(hostedai_env, hostedai_client):
            assert hostedai_client.dialect == "v1"
            assert os.environ["HOSTED_AI_DIALECT"] == "v1"
            assert "HOSTED_AI_TEAM_ID" not in os.environ
            with harpoon.HostedAI() as client:
                with client.allocate(model="gemma-3-270m") as lease:
                    assert lease.allocation.pool_id == POOL
        """,
        dialect="v1",
    )
    result.assert_outcomes(passed=1)
