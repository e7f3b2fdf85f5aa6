"""Tests of ``testing_your_app.py``, as you would write them for your own code.

The fixtures (``hostedai_client``, ``hostedai_async_client``, ``hostedai_emulator``,
``hostedai_env``) and the markers come from the pytest plugin installed with
hostedai-harpoon: no conftest, no credentials, no network. Every test also gets the leak
check for free: had ``summarise_tickets`` forgotten to release its GPU, the test would error
at teardown naming the allocation.
"""

from __future__ import annotations

import pytest
from testing_your_app import SUMMARY_MODEL, TICKETS, answer, main, summarise_tickets

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, Fault

# Retries without the production backoff, so that fault tests run in milliseconds.
FAST_RETRIES = harpoon.RetryPolicy(max_retries=8, initial_backoff=0.001, max_backoff=0.005)


def test_one_summary_per_ticket_on_one_lease(
    hostedai_client: harpoon.HostedAI, hostedai_emulator: Emulator
) -> None:
    summaries = summarise_tickets(hostedai_client, TICKETS)
    assert len(summaries) == len(TICKETS)
    assert all(summaries)
    (allocation,) = hostedai_emulator.allocations()
    assert allocation.model == SUMMARY_MODEL
    assert len(hostedai_emulator.requests_to("POST", "/v1/inference")) == len(TICKETS)


def test_no_tickets_rent_no_gpu(
    hostedai_client: harpoon.HostedAI, hostedai_emulator: Emulator
) -> None:
    assert summarise_tickets(hostedai_client, []) == []
    assert hostedai_emulator.allocations() == []


@pytest.mark.hostedai_faults(Fault("error", path="/v1/inference", status=503, times=2))
@pytest.mark.hostedai_client(retry=FAST_RETRIES)
def test_a_briefly_unavailable_service_is_retried(
    hostedai_client: harpoon.HostedAI, hostedai_emulator: Emulator
) -> None:
    assert len(summarise_tickets(hostedai_client, TICKETS)) == len(TICKETS)
    statuses = [e.status for e in hostedai_emulator.requests_to("POST", "/v1/inference")]
    assert statuses == [503, 503, 200, 200]


@pytest.mark.hostedai_faults(Fault("drop", path="/v1/inference", when="after"))
def test_a_lost_answer_fails_the_batch_and_still_frees_the_gpu(
    hostedai_client: harpoon.HostedAI, hostedai_emulator: Emulator
) -> None:
    # An inference may have run before its answer was lost, so it is not repeated.
    with pytest.raises(harpoon.APIConnectionError):
        summarise_tickets(hostedai_client, TICKETS)
    assert hostedai_emulator.live_allocations() == []


def test_a_gpu_that_never_comes_up_is_an_allocation_error(
    hostedai_client: harpoon.HostedAI, hostedai_emulator: Emulator
) -> None:
    hostedai_emulator.fail_next_allocations()
    with pytest.raises(harpoon.AllocationError):
        summarise_tickets(hostedai_client, TICKETS)


# Under heavy fault injection the client's circuit breaker would soon refuse calls: that is
# its job in production, not what this test is about, so it is turned off.
@pytest.mark.hostedai_faults(error_rate=0.3, error_statuses=[503], seed=11)
@pytest.mark.hostedai_client(circuit_breaker=None, retry=FAST_RETRIES)
def test_a_noisy_service_still_gets_every_summary(
    hostedai_client: harpoon.HostedAI, hostedai_emulator: Emulator
) -> None:
    tickets = TICKETS * 5
    assert len(summarise_tickets(hostedai_client, tickets)) == len(tickets)
    assert any(e.fault == "error" for e in hostedai_emulator.exchanges)


@pytest.mark.asyncio
async def test_answer_uses_the_large_model(
    hostedai_async_client: harpoon.AsyncHostedAI, hostedai_emulator: Emulator
) -> None:
    assert await answer(hostedai_async_client, "Why is the sky blue?")
    (allocation,) = hostedai_emulator.allocations()
    assert allocation.model == "qwen3-30b-a3b"


def test_main_uses_the_configured_endpoint(
    hostedai_env: str, hostedai_emulator: Emulator, capsys: pytest.CaptureFixture[str]
) -> None:
    main()
    out = capsys.readouterr().out
    assert out.startswith(f"against HOSTED_AI_BASE_URL ({hostedai_env})\n")
    assert out.count("  -> ") == len(TICKETS)
    assert len(hostedai_emulator.allocations()) == 1


def test_main_falls_back_to_the_embedded_emulator(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("HOSTED_AI_BASE_URL", raising=False)
    main()
    assert capsys.readouterr().out.startswith("against the embedded emulator")
