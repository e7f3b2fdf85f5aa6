"""Closing, cancelling and leaving blocks: every way out leaves no allocation behind."""

from __future__ import annotations

import asyncio

import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator
from tests.conftest import EmulatorFactory
from tests.dialects import Paths
from tests.orchestrator.conftest import API_KEY, Connect, live_ids

pytestmark = pytest.mark.timeout(60)

SLOW = {"latency_scale": 0.5}  # an inference really takes 10 to 100 ms or more


async def until(condition: object, *, step: float = 0.002) -> None:
    """Wait (bounded by the test's timeout) until ``condition()`` holds."""
    while not condition():  # type: ignore[operator]
        await asyncio.sleep(step)


async def test_leaving_the_orchestrator_with_fifty_calls_in_flight_leaks_nothing(
    make_emulator: EmulatorFactory, connect: Connect
) -> None:
    emu = make_emulator(**SLOW)
    client = connect(emu)
    async with harpoon.Orchestrator(client, drain_timeout=0.0) as orch:
        calls = [asyncio.create_task(orch.process(f"question {i}")) for i in range(50)]
        await until(lambda: orch.snapshot().total.in_flight == 50)
    outcomes = await asyncio.gather(*calls, return_exceptions=True)

    cut_off = [o for o in outcomes if isinstance(o, harpoon.OrchestratorClosedError)]
    finished = [o for o in outcomes if isinstance(o, harpoon.RoutedResult)]
    assert len(cut_off) + len(finished) == 50, outcomes
    assert cut_off  # drain_timeout=0: what had not finished was cut off
    assert live_ids(emu) == []
    assert client.orphans() == []


async def test_closing_lets_calls_in_flight_finish_within_the_drain_timeout(
    make_emulator: EmulatorFactory, connect: Connect
) -> None:
    emu = make_emulator(latency_scale=0.05)
    async with harpoon.Orchestrator(connect(emu), drain_timeout=30.0) as orch:
        calls = [asyncio.create_task(orch.process(f"question {i}")) for i in range(20)]
        await until(lambda: orch.snapshot().total.in_flight == 20)
    outcomes = await asyncio.gather(*calls, return_exceptions=True)

    assert all(isinstance(o, harpoon.RoutedResult) for o in outcomes), outcomes
    assert live_ids(emu) == []


async def test_a_cancelled_process_call_leaks_nothing_while_leasing_or_inferring(
    make_emulator: EmulatorFactory, connect: Connect, paths: Paths
) -> None:
    emu = make_emulator(ready_delay=0.2, **SLOW)
    async with harpoon.Orchestrator(connect(emu)) as orch:
        leasing = asyncio.create_task(orch.process("Hi!"))
        await until(lambda: len(emu.requests_to(*paths.create)) == 1)
        leasing.cancel()
        with pytest.raises(asyncio.CancelledError):
            await leasing
        assert live_ids(emu) == []  # the lease being made was released

        await orch.process("Hi!")  # one warm allocation now
        inferring = asyncio.create_task(orch.process("Hi again!"))
        await until(lambda: orch.snapshot().total.in_flight == 1)
        inferring.cancel()
        with pytest.raises(asyncio.CancelledError):
            await inferring
        assert orch.snapshot().total.in_flight == 0
        assert len(live_ids(emu)) == 1  # still warm, and reused:
        again = await orch.process("Hi!")
        assert again.result.allocation_id == live_ids(emu)[0]
    assert live_ids(emu) == []


async def test_a_session_cancelled_mid_call_releases_what_it_leased(
    make_emulator: EmulatorFactory, connect: Connect
) -> None:
    emu = make_emulator(**SLOW)
    async with harpoon.Orchestrator(connect(emu)) as orch:

        async def use_a_session() -> None:
            async with orch.allocate() as session:
                await session.infer("Hi!")

        task = asyncio.create_task(use_a_session())
        await until(lambda: orch.snapshot().total.in_flight == 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert live_ids(emu) == []  # released on leaving the session, orchestrator still open
        assert orch.snapshot().total.in_flight == 0


async def test_leaving_a_session_cancels_other_tasks_calls_and_releases_everything(
    make_emulator: EmulatorFactory, connect: Connect
) -> None:
    emu = make_emulator(**SLOW)
    async with harpoon.Orchestrator(connect(emu)) as orch:
        async with orch.allocate() as session:
            calls = [asyncio.create_task(session.infer(f"q {i}")) for i in range(10)]
            await until(lambda: orch.snapshot().total.in_flight == 10)
        assert live_ids(emu) == []
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
        assert all(isinstance(o, harpoon.OrchestratorClosedError) for o in outcomes), outcomes
        with pytest.raises(harpoon.OrchestratorClosedError, match="session is closed"):
            await session.infer("too late")
        assert (await orch.process("the orchestrator is still open")).result.text


async def test_a_session_left_by_an_exception_releases_everything(
    emulator: Emulator, connect: Connect
) -> None:
    held = []

    async def fail_inside(orch: harpoon.Orchestrator) -> None:
        async with orch.allocate(prewarm=["qwen3-30b-a3b", "gemma-3-270m"]) as session:
            await session.infer("Hi!")
            held.extend(live_ids(emulator))
            raise ZeroDivisionError

    async with harpoon.Orchestrator(connect(emulator)) as orch:
        with pytest.raises(ZeroDivisionError):
            await fail_inside(orch)
        assert len(held) == 2
        assert live_ids(emulator) == []


async def test_a_closed_orchestrator_refuses_calls_and_closing_again_is_harmless(
    emulator: Emulator, connect: Connect
) -> None:
    client = connect(emulator)
    async with harpoon.Orchestrator(client) as orch:
        await orch.process("Hi!")
        await orch.aclose()
    await orch.aclose()
    with pytest.raises(harpoon.OrchestratorClosedError):
        await orch.process("Hi!")
    with pytest.raises(harpoon.OrchestratorClosedError):
        orch.allocate()
    assert live_ids(emulator) == []
    assert (await client.health()).status == "ok"  # a client passed in is not closed


async def test_an_orchestrator_made_from_the_environment_closes_its_own_client(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    with emulator.serve() as base_url:
        monkeypatch.setenv("HOSTED_AI_BASE_URL", base_url)
        monkeypatch.setenv("HOSTED_AI_API_KEY", API_KEY)
        async with harpoon.Orchestrator() as orch:
            assert (await orch.process("Hi!")).result.text
        with pytest.raises(harpoon.UsageError, match="client is closed"):
            await orch.client.health()
    assert live_ids(emulator) == []


async def test_an_orchestrator_never_entered_refuses_calls_and_sends_nothing(
    emulator: Emulator, connect: Connect, paths: Paths
) -> None:
    orch = harpoon.Orchestrator(connect(emulator))
    for call in (orch.infer, orch.process):
        with pytest.raises(harpoon.UsageError, match=r"async with Orchestrator"):
            await call("Hi!")
    with pytest.raises(harpoon.UsageError, match=r"async with Orchestrator"):
        orch.allocate()
    with pytest.raises(harpoon.UsageError, match=r"async with Orchestrator"):
        async with orch.stream("Hi!"):
            pass  # pragma: no cover
    assert emulator.requests_to(*paths.create) == []
    assert live_ids(emulator) == []


async def test_misused_sessions_and_streams_name_the_fix(
    emulator: Emulator, connect: Connect
) -> None:
    async with harpoon.Orchestrator(connect(emulator)) as orch:
        refused = pytest.raises(harpoon.UsageError, match=r"async with orchestrator.allocate")
        with refused, orch.allocate():
            pass  # pragma: no cover
        async with orch.allocate() as session:
            stream = session.stream("Hi!")
            with pytest.raises(harpoon.UsageError, match=r"async with session.stream"):
                async for _ in stream:
                    pass  # pragma: no cover
            with pytest.raises(harpoon.UsageError, match=r"async with session.stream"):
                stream.decision  # noqa: B018
    assert live_ids(emulator) == []


def test_the_orchestrator_needs_a_configured_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HOSTED_AI_BASE_URL", raising=False)
    monkeypatch.delenv("HOSTED_AI_API_KEY", raising=False)
    with pytest.raises(harpoon.ConfigurationError, match="HOSTED_AI_BASE_URL"):
        harpoon.Orchestrator()


async def test_closing_the_orchestrator_cuts_off_a_session_still_prewarming(
    make_emulator: EmulatorFactory, connect: Connect, paths: Paths
) -> None:
    emu = make_emulator(ready_delay=0.5)
    async with harpoon.Orchestrator(connect(emu), drain_timeout=0.0) as orch:

        async def enter() -> None:
            async with orch.allocate(prewarm=["qwen3-30b-a3b"]):
                pytest.fail(
                    "the orchestrator closed before the prewarm was ready"
                )  # pragma: no cover

        entering = asyncio.create_task(enter())
        await until(lambda: len(emu.requests_to(*paths.create)) == 1)
        await orch.aclose()
        assert live_ids(emu) == []
    with pytest.raises(harpoon.OrchestratorClosedError):
        await entering


async def test_closing_the_orchestrator_waits_for_a_session_closing_by_itself(
    emulator: Emulator, connect: Connect
) -> None:
    entered = asyncio.Event()
    async with harpoon.Orchestrator(connect(emulator)) as orch:

        async def use() -> None:
            async with orch.allocate(prewarm=["qwen3-30b-a3b", "gemma-3-270m"]):
                entered.set()
                await asyncio.sleep(3600)

        task = asyncio.create_task(use())
        await entered.wait()
        task.cancel()  # the session starts releasing in its own task...
        await asyncio.sleep(0)
        await orch.aclose()  # ...and closing the orchestrator waits until it is done
        assert live_ids(emulator) == []
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_leaving_a_session_cuts_off_a_stream_being_read_in_another_task(
    make_emulator: EmulatorFactory, connect: Connect
) -> None:
    emu = make_emulator(stream_chunk_delay=0.05)
    reading = asyncio.Event()

    async def read(session: harpoon.Session) -> list[str]:
        deltas = []
        async with session.stream("Tell me a long story.", max_tokens=200) as chunks:
            async for chunk in chunks:
                deltas.append(chunk.delta)
                reading.set()
        return deltas

    async with harpoon.Orchestrator(connect(emu)) as orch:
        async with orch.allocate() as session:
            reader = asyncio.create_task(read(session))
            await reading.wait()
        with pytest.raises(harpoon.OrchestratorClosedError):
            await reader
        assert live_ids(emu) == []
        assert orch.snapshot().total.in_flight == 0
