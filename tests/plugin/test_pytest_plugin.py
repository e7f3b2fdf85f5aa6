"""The pytest plugin, as a user's test suite meets it: run in an inner pytest with pytester.

The inner runs have no conftest and no configuration: every fixture and marker comes from
the ``pytest11`` entry point the package installs. Each test that takes ``dialect`` runs on
v1 and on hosted·ai's platform (``--hostedai-dialect``; see conftest.py): every guarantee of
the plugin holds on both.
"""

from __future__ import annotations

import pytest

from tests.plugin.conftest import LEAK_REPORTS
from tests.plugin.conftest import run_inner as _run

pytest_plugins = ["pytester"]


def test_the_fixtures_reach_the_emulator_with_no_setup(
    pytester: pytest.Pytester, dialect: str
) -> None:
    result = _run(
        pytester,
        """
        import os

        import httpx
        import pytest
        import hostedai_harpoon as harpoon

        def test_sync_client(hostedai_client, hostedai_emulator, hostedai_dialect):
            assert hostedai_dialect == hostedai_emulator.dialect == DIALECT
            assert hostedai_client.dialect == DIALECT
            with hostedai_client.allocate(model="gemma-3-270m") as lease:
                assert lease.infer("Hello", max_tokens=4).usage.output_tokens == 4
                assert [a.id for a in hostedai_emulator.live_allocations()] == [lease.id]
            assert hostedai_emulator.live_allocations() == []
            assert hostedai_emulator.requests_to(*INFERENCE)

        @pytest.mark.asyncio
        async def test_async_client(hostedai_async_client, hostedai_emulator):
            assert hostedai_async_client.dialect == DIALECT
            async with hostedai_async_client.allocate(model="qwen3-30b-a3b") as lease:
                assert (await lease.infer("Hello", max_tokens=3)).usage.output_tokens == 3
            assert len(hostedai_emulator.requests_to(*RELEASE)) == 1

        def test_server_is_the_same_emulator_over_tcp(hostedai_server, hostedai_emulator):
            assert hostedai_server.startswith("http://127.0.0.1:")
            health = httpx.get(
                hostedai_server + HEALTH, params=HEALTH_QUERY, headers=AUTH, timeout=5
            )
            assert health.status_code == 200, health.text
            assert hostedai_emulator.requests_to("GET", HEALTH)

        def test_env_lets_code_build_its_own_client(hostedai_env, hostedai_emulator, tmp_path):
            assert os.environ["HOSTED_AI_DIALECT"] == DIALECT
            with harpoon.HostedAI() as client:
                assert client.base_url == hostedai_env
                assert client.dialect == DIALECT
                allocation = client.create_allocation(model="gemma-3-270m")
                assert allocation.pool_id == POOL
                client.release_allocation(allocation.id)
                with client.allocate(model="gemma-3-270m") as lease:
                    assert lease.infer("Hi").text
        """,
        dialect=dialect,
    )
    result.assert_outcomes(passed=4)


def test_a_shell_pool_variable_does_not_leak_into_the_clients(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, dialect: str
) -> None:
    monkeypatch.setenv("HOSTED_AI_POOL_ID", "a-real-pool-somewhere")
    result = _run(
        pytester,
        """
        def test_allocate(hostedai_client):
            with hostedai_client.allocate(model="gemma-3-270m") as lease:
                assert lease.allocation.pool_id == POOL
        """,
        dialect=dialect,
    )
    result.assert_outcomes(passed=1)


@pytest.mark.parametrize(
    ("fixture", "leak"),
    [
        ("hostedai_client", "hostedai_client.create_allocation(model='gemma-3-270m')"),
        (
            "hostedai_async_client",
            "asyncio.run(hostedai_async_client.create_allocation(model='gemma-3-270m'))",
        ),
        (
            "hostedai_server",
            "httpx.post(hostedai_server + LEAK_PATH, json=LEAK_BODY, headers=AUTH,"
            " timeout=5).raise_for_status()",
        ),
        (
            "hostedai_emulator",
            "hostedai_emulator.http_client(headers=AUTH)"
            ".post(LEAK_PATH, json=LEAK_BODY).raise_for_status()",
        ),
    ],
)
def test_a_leaked_allocation_fails_the_test_at_teardown(
    pytester: pytest.Pytester, fixture: str, leak: str, dialect: str
) -> None:
    result = _run(
        pytester,
        f"""
        import asyncio
        import httpx

        def test_leaks({fixture}):
            {leak}
        """,
        dialect=dialect,
    )
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_leaks*", LEAK_REPORTS[dialect]])
    assert result.ret != 0


def test_a_test_that_releases_what_it_leaked_passes(
    pytester: pytest.Pytester, dialect: str
) -> None:
    result = _run(
        pytester,
        """
        def test_cleans_up(hostedai_client, hostedai_emulator):
            a = hostedai_client.create_allocation(model="gemma-3-270m")
            b = hostedai_client.create_allocation(model="gemma-3-270m")
            hostedai_client.release_allocation(a.id)
            hostedai_emulator.reset()
            assert hostedai_emulator.live_allocations() == []
            assert hostedai_emulator.exchanges == []
        """,
        dialect=dialect,
    )
    result.assert_outcomes(passed=1)


def test_the_faults_marker_takes_rules_kwargs_or_a_plan(
    pytester: pytest.Pytester, dialect: str
) -> None:
    result = _run(
        pytester,
        """
        import pytest
        from hostedai_harpoon.testing import Fault, FaultPlan

        HEALTH_ERROR = Fault("error", path=HEALTH, status=500, times=1)
        INFERENCE_ERROR = Fault("error", path=INFERENCE[1], status=503, times=1)

        @pytest.mark.hostedai_faults(HEALTH_ERROR)
        def test_rule(hostedai_client, hostedai_emulator, hostedai_faults):
            assert hostedai_faults.rules == (HEALTH_ERROR,)
            assert hostedai_client.health().status == "ok"
            statuses = [e.status for e in hostedai_emulator.requests_to("GET", HEALTH)]
            assert statuses == [500, 200]

        @pytest.mark.hostedai_faults(INFERENCE_ERROR)
        def test_a_lease_rides_out_a_fault(hostedai_client, hostedai_emulator):
            with hostedai_client.allocate(model="gemma-3-270m") as lease:
                assert lease.infer("Hello").text
            statuses = [e.status for e in hostedai_emulator.requests_to(*INFERENCE)]
            assert statuses == [503, 200]

        @pytest.mark.hostedai_faults(error_rate=1.0, paths=[HEALTH], seed=3)
        def test_kwargs(hostedai_emulator, hostedai_faults):
            assert hostedai_faults == FaultPlan(error_rate=1.0, paths=[HEALTH], seed=3)
            assert hostedai_emulator.faults is hostedai_faults

        DROP = Fault("drop", method="POST", times=1)

        @pytest.mark.hostedai_faults(HEALTH_ERROR, rules=[DROP], seed=4)
        def test_rules_both_ways(hostedai_faults):
            assert hostedai_faults == FaultPlan(rules=[HEALTH_ERROR, DROP], seed=4)

        @pytest.mark.hostedai_faults(FaultPlan(rate_limit_rate=0.5, seed=1))
        def test_plan(hostedai_emulator):
            assert hostedai_emulator.faults == FaultPlan(rate_limit_rate=0.5, seed=1)

        def test_none(hostedai_emulator, hostedai_faults):
            assert hostedai_faults is None
            assert hostedai_emulator.faults is None

        @pytest.mark.hostedai_faults(error_rate=1.0)
        class TestOnAClass:
            def test_inherits(self, hostedai_faults):
                assert hostedai_faults.error_rate == 1.0

            @pytest.mark.hostedai_faults(drop_rate=0.5)
            def test_closest_wins(self, hostedai_faults):
                assert (hostedai_faults.error_rate, hostedai_faults.drop_rate) == (0.0, 0.5)
        """,
        dialect=dialect,
    )
    result.assert_outcomes(passed=8)


def test_a_conftest_can_set_the_fault_plan_for_a_directory(
    pytester: pytest.Pytester, dialect: str
) -> None:
    pytester.makeconftest(
        """
        import pytest
        from hostedai_harpoon.testing import FaultPlan

        @pytest.fixture
        def hostedai_faults():
            return FaultPlan(error_rate=0.25, error_statuses=[503], seed=9)
        """
    )
    result = _run(
        pytester,
        """
        import pytest

        @pytest.mark.hostedai_client(circuit_breaker=None, max_retries=8)
        def test_plan(hostedai_client, hostedai_emulator):
            assert hostedai_emulator.faults.error_rate == 0.25
            with hostedai_client.allocate(model="gemma-3-270m") as lease:
                for _ in range(4):
                    assert lease.infer("Hello").text
            assert any(e.fault == "error" for e in hostedai_emulator.exchanges)
        """,
        dialect=dialect,
    )
    result.assert_outcomes(passed=1)


def test_the_emulator_and_client_markers_configure_their_fixtures(
    pytester: pytest.Pytester, dialect: str
) -> None:
    result = _run(
        pytester,
        """
        import pytest

        @pytest.mark.hostedai_emulator(pools={"small": 2, "big": 16})
        def test_pools(hostedai_client):
            assert [p.id for p in hostedai_client.list_pools()] == ["small", "big"]
            with hostedai_client.allocate(model="gemma-3-270m") as lease:
                assert lease.allocation.pool_id == "small"

        @pytest.mark.hostedai_client(circuit_breaker=None, max_retries=0)
        @pytest.mark.asyncio
        async def test_client_options(hostedai_client, hostedai_async_client):
            for client in (hostedai_client, hostedai_async_client):
                assert client.circuit_breaker is None
                assert client.max_retries == 0
                assert client.dialect == DIALECT
        """,
        dialect=dialect,
    )
    result.assert_outcomes(passed=2)


@pytest.mark.parametrize(
    ("marker", "message"),
    [
        (
            "hostedai_faults(FaultPlan(), error_rate=0.1)",
            "*takes a FaultPlan or FaultPlan keyword arguments, not both*",
        ),
        ("hostedai_faults('drop')", "*takes one FaultPlan, or Fault rules*"),
        (
            "hostedai_faults(error_rate=2.0)",
            "*hostedai_faults: error_rate must be between 0 and 1*",
        ),
        ("hostedai_emulator(ready_delay=-1)", "*hostedai_emulator: ready_delay*"),
        ("hostedai_emulator(no_such_option=1)", "*hostedai_emulator:*no_such_option*"),
        ("hostedai_client({})", "*hostedai_client takes keyword arguments only*"),
        (
            "hostedai_faults(error_rate=0.1)\n        @pytest.mark.hostedai_emulator(faults=None)",
            "*give the fault plan once*",
        ),
        (
            "hostedai_emulator(dialect='v2')",
            "*hostedai_emulator: dialect must be 'v1' or 'gpuaas', got 'v2'*",
        ),
        (
            "hostedai_client(dialect='gpuaas')",
            "*hostedai_client: the clients speak the emulator's dialect; set it with "
            "@pytest.mark.hostedai_emulator(dialect=...) or --hostedai-dialect*",
        ),
        ("hostedai_client(ledger_dir=3)", "*hostedai_client: ledger_dir*"),
        ("hostedai_client(no_such_option=1)", "*hostedai_client:*no_such_option*"),
    ],
)
def test_a_misused_marker_errors_with_one_clear_line(
    pytester: pytest.Pytester, marker: str, message: str, dialect: str
) -> None:
    result = _run(
        pytester,
        f"""
        import pytest
        from hostedai_harpoon.testing import FaultPlan

        @pytest.mark.{marker}
        def test_it(hostedai_client):
            pass
        """,
        dialect=dialect,
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines([message])
    result.stdout.no_fnmatch_line("*Traceback*")
    result.stdout.no_fnmatch_line("*During handling*")


@pytest.mark.parametrize(
    ("options", "marker"),
    [
        (("-o", "asyncio_mode=auto"), ""),
        (("-o", "asyncio_mode=strict"), "@pytest.mark.asyncio"),
        (("-o", "asyncio_mode=strict"), "@pytest.mark.anyio"),
    ],
)
def test_the_async_client_works_under_each_async_test_runner(
    pytester: pytest.Pytester, options: tuple[str, ...], marker: str, dialect: str
) -> None:
    result = _run(
        pytester,
        f"""
        import pytest

        {marker}
        async def test_lease(hostedai_async_client, hostedai_emulator):
            async with hostedai_async_client:
                async with hostedai_async_client.allocate(model="gemma-3-270m") as lease:
                    assert (await lease.infer("Hi")).text
            assert hostedai_emulator.live_allocations() == []
            assert hostedai_emulator.requests_to(*RELEASE)
        """,
        *options,
        dialect=dialect,
    )
    result.assert_outcomes(passed=1)


def test_the_plugin_can_be_turned_off(pytester: pytest.Pytester) -> None:
    result = _run(
        pytester, "def test_it(hostedai_client):\n    pass\n", "-p", "no:hostedai_harpoon"
    )
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'hostedai_client' not found*"])


def test_the_served_emulator_without_uvicorn_says_what_to_install(
    pytester: pytest.Pytester, dialect: str
) -> None:
    result = _run(
        pytester,
        """
        import sys
        import pytest

        @pytest.fixture(autouse=True)
        def no_uvicorn(monkeypatch):
            monkeypatch.setitem(sys.modules, "uvicorn", None)

        def test_served(hostedai_server):
            pass
        """,
        dialect=dialect,
    )
    result.assert_outcomes(errors=1)
    report = result.stdout.str().split("= ERRORS =")[1].split("short test summary")[0]
    assert "serving the emulator needs uvicorn: pip install 'hostedai-harpoon[emulator]'" in report
    assert "exception" not in report, report  # one message, no chain of import errors


def test_the_orchestrator_fixture_routes_and_its_leaks_fail_the_test(
    pytester: pytest.Pytester, dialect: str
) -> None:
    result = _run(
        pytester,
        """
        import pytest
        import hostedai_harpoon as harpoon

        @pytest.mark.asyncio
        async def test_routes(hostedai_orchestrator, hostedai_emulator):
            async with hostedai_orchestrator as orchestrator:
                routed = await orchestrator.process("Hi there!")
                assert routed.decision.target.name == "gemma-3-270m"
            assert hostedai_emulator.live_allocations() == []

        @pytest.mark.asyncio
        @pytest.mark.hostedai_orchestrator(policy=harpoon.CostPolicy())
        async def test_marker(hostedai_orchestrator):
            async with hostedai_orchestrator as orchestrator:
                # The default policy would send this proof to the large model.
                proof = "Prove that sqrt(2) is irrational, step by step."
                routed = await orchestrator.process(proof)
                assert routed.decision.target.name == "gemma-3-270m"

        @pytest.mark.asyncio
        async def test_leaks(hostedai_orchestrator):
            orchestrator = await hostedai_orchestrator.__aenter__()
            await orchestrator.process("Hi there!")  # never closed: the warm GPU stays
        """,
        dialect=dialect,
    )
    result.assert_outcomes(passed=3, errors=1)
    what = "subscription(s)" if dialect == "gpuaas" else "allocation(s)"
    result.stdout.fnmatch_lines(
        [
            "*ERROR at teardown of test_leaks*",
            f"1 {what} left live on the HostedAI emulator ({dialect}): *",
        ]
    )
