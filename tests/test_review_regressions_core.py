"""Regressions from the review of the restructured core: sync deadlines, pool waits,
redirected streams, idempotency conflicts, constructor arguments."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

import httpx
import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import Emulator, Fault, FaultPlan


# F1: with a deadline (and for every sync release/renewal, which always has one) a transport
# error comes back from the attempt thread as a *value* that _by_the_deadline raises.
def test_sync_deadline_keeps_transport_errors_retryable_and_typed() -> None:
    emu = Emulator(faults=FaultPlan(rules=(Fault("drop", path="/v1/health", times=1),)))
    with emu.serve() as url:
        client = harpoon.HostedAI(url, "sk", deadline=10.0)
        assert client.health().status == "ok"  # main: raw httpx.RemoteProtocolError
        assert len(emu.requests_to("GET", "/v1/health")) == 2


def test_sync_lease_release_retries_a_dropped_delete() -> None:
    emu = Emulator(faults=FaultPlan(rules=(Fault("drop", method="DELETE", times=1),)))
    with emu.serve() as url:
        client = harpoon.HostedAI(url, "sk")
        with client.allocate("gemma-3-270m"):
            pass  # main: raises httpx.RemoteProtocolError here, and records an orphan
        assert client.orphans() == []
        assert emu.live_allocations() == []


def test_sync_keepalive_survives_a_dropped_renewal() -> None:
    emu = Emulator(faults=FaultPlan(rules=(Fault("drop", path="/v1/allocate/*/renew", times=1),)))
    with emu.serve() as url:
        client = harpoon.HostedAI(url, "sk")
        with client.allocate("gemma-3-270m", ttl=2, renew_interval=0.2) as lease:
            time.sleep(2.6)  # main: the keepalive thread died on the drop; the TTL ran out
            assert lease.state is harpoon.LeaseState.ACTIVE
            lease.infer("hi", max_tokens=1)


# F2: an attempt waiting for a connection of our own pool, cut short by the deadline, is
# counted by the breaker as a host failure (item 8 of the hardening issue, via the deadline).
def test_deadline_spent_waiting_for_our_own_pool_does_not_open_the_breaker() -> None:
    emu = Emulator(faults=FaultPlan(rules=(Fault("latency", path="/v1/health", delay=0.2),)))
    with emu.serve() as url:
        http = httpx.Client(limits=httpx.Limits(max_connections=2))
        client = harpoon.HostedAI(url, "sk", deadline=0.5, max_retries=0, http_client=http)
        threads = [threading.Thread(target=lambda: _swallow(client.health)) for _ in range(30)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert all(x.status == 200 for x in emu.exchanges)
        assert client.circuit_breaker is not None
        assert client.circuit_breaker.state is not harpoon.CircuitState.OPEN


def _swallow(fn: Callable[[], object]) -> None:
    with contextlib.suppress(harpoon.HostedAIError):
        fn()


# F4: a stream call answered 3xx leaves its response (and connection) open.
def test_a_redirected_stream_call_closes_its_response() -> None:
    closed: list[bool] = []

    class Body(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            yield b"moved"

        def close(self) -> None:
            closed.append(True)

    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(307, headers={"location": "https://x/"}, stream=Body())

    http = httpx.Client(transport=httpx.MockTransport(handler))
    client = harpoon.HostedAI("http://127.0.0.1:1", "sk", http_client=http, max_retries=0)
    with pytest.raises(harpoon.APIStatusError), client.stream("alloc", "hi"):
        pass  # pragma: no cover (the stream is sent on entering)
    assert closed == [True]


# F5: a 409 on create (key used before with another body) is a permanent fake orphan.
def test_a_conflicting_idempotency_key_records_no_orphan() -> None:
    emu = Emulator()
    client = harpoon.HostedAI("http://127.0.0.1:1", "sk", http_client=emu.http_client())
    client.release_allocation(client.create_allocation("gemma-3-270m", idempotency_key="job-42").id)
    with (
        pytest.raises(harpoon.ConflictError),
        client.allocate("gemma-3-270m", idempotency_key="job-42"),
    ):
        pass
    assert client.orphans() == []  # main: OrphanedAllocation(None, 'job-42'), never cleared


# F7: bad constructor / with_options arguments give raw errors.
@pytest.mark.parametrize(
    "kwargs",
    [{"circuit_breaker": True}, {"default_headers": "x-team: a"}, {"base_url": "https://h\ud800"}],
)
def test_bad_constructor_arguments_are_configuration_errors(kwargs: dict[str, object]) -> None:
    kw: dict[str, object] = {"base_url": "https://h.example", "api_key": "sk", **kwargs}
    with pytest.raises(harpoon.ConfigurationError):
        harpoon.HostedAI(**kw)  # type: ignore[arg-type]


def test_with_options_refuses_a_retry_that_is_not_a_policy() -> None:
    client = harpoon.HostedAI("https://h.example", "sk")
    with pytest.raises(harpoon.ConfigurationError):
        client.with_options(retry=None)  # type: ignore[arg-type]
