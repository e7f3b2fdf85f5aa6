"""Leases with ``inference="openai"``: inference goes to the allocation's endpoint."""

from __future__ import annotations

import pytest

import hostedai_harpoon as harpoon
from hostedai_harpoon.testing import AllocationRecord, Emulator, Fault, FaultPlan

MODEL = "gemma-3-270m"


def _client(emulator: Emulator, *, allow_insecure_http: bool = False) -> harpoon.HostedAI:
    return harpoon.HostedAI(
        "https://api.example",
        "sk-secret-key",
        http_client=emulator.http_client(),
        allow_insecure_http=allow_insecure_http,
    )


def _aclient(emulator: Emulator) -> harpoon.AsyncHostedAI:
    return harpoon.AsyncHostedAI(
        "https://api.example", "sk-secret-key", http_client=emulator.async_http_client()
    )


def test_a_lease_infers_at_its_endpoint(emulator: Emulator) -> None:
    with _client(emulator) as client, client.allocate(model=MODEL, inference="openai") as lease:
        result = lease.infer("Hi", max_tokens=4)
        chunks = list(lease.stream("Hi", max_tokens=4))
        chat = lease.infer(messages=[{"role": "user", "content": "Hi"}], max_tokens=4)
        expected = client.infer(lease.id, "Hi", max_tokens=4)
    assert emulator.requests_to("POST", "/v1/inference") != []
    paths = [
        e.path for e in emulator.requests_to("POST", f"/endpoints/{lease.id}/v1/chat/completions")
    ]
    assert len(paths) == 3
    assert (result.text, result.usage, result.finish_reason) == (
        expected.text,
        expected.usage,
        expected.finish_reason,
    )
    assert chat.text == result.text
    assert "".join(c.delta for c in chunks) == result.text
    assert (chunks[-1].finish_reason, chunks[-1].usage) == ("length", result.usage)
    assert emulator.live_allocations() == []


async def test_an_async_lease_infers_at_its_endpoint(emulator: Emulator) -> None:
    async with (
        _aclient(emulator) as client,
        client.allocate(model=MODEL, inference="openai-completions") as lease,
    ):
        result = await lease.infer("Hi", stop="kernel")
        async with lease.stream("Hi", stop="kernel") as chunks:
            streamed = [chunk async for chunk in chunks]
        expected = await client.infer(lease.id, "Hi", stop="kernel")
    assert len(emulator.requests_to("POST", f"/endpoints/{lease.id}/v1/completions")) == 2
    assert (result.text, result.usage) == (expected.text, expected.usage)
    assert result.allocation_id == lease.id
    assert "".join(c.delta for c in streamed) == result.text
    assert emulator.live_allocations() == []


@pytest.mark.parametrize(
    ("endpoint", "reason"),
    [
        (None, "endpoint of allocation alloc_\\w+ is missing"),
        ("ftp://files.example/x", "must be an absolute http:// or https:// URL"),
        ("http://10.0.0.5:8000", "refusing plain http:// to '10.0.0.5'"),
    ],
    ids=["missing", "not-http", "plain-http-elsewhere"],
)
async def test_a_lease_without_a_usable_endpoint_fails_naming_the_allocation(
    monkeypatch: pytest.MonkeyPatch, endpoint: str | None, reason: str
) -> None:
    emulator = Emulator()  # made to break its contract: not the checked fixture
    monkeypatch.setattr(AllocationRecord, "endpoint_at", lambda self, base: endpoint)
    client = _client(emulator)
    with (
        pytest.raises(harpoon.AllocationError, match=reason) as caught,
        client.allocate(model=MODEL, inference="openai"),
    ):
        pytest.fail("entered")
    assert caught.value.allocation_id is not None
    assert caught.value.allocation_id in str(caught.value)
    with pytest.raises(harpoon.AllocationError, match=reason):
        async with _aclient(emulator) as aclient, aclient.allocate(model=MODEL, inference="openai"):
            pytest.fail("entered")
    assert [e.path for e in emulator.exchanges if "/v1/allocate" not in e.path] == []
    assert emulator.live_allocations() == []


def test_plain_http_to_another_host_is_allowed_when_asked(
    emulator: Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        AllocationRecord,
        "endpoint_at",
        lambda self, base: f"http://10.0.0.5:8000/endpoints/{self.id}",
    )
    client = _client(emulator, allow_insecure_http=True)
    with client.allocate(model=MODEL, inference="openai") as lease:
        assert lease.infer("Hi").text  # the in-process transport ignores the host


def test_a_fault_at_the_endpoint_is_retried_and_a_404_does_not_lose_the_lease(
    emulator: Emulator,
) -> None:
    emulator.faults = FaultPlan(
        rules=[Fault("error", path="/endpoints/*/v1/chat/completions", times=1, status=503)]
    )
    with _client(emulator) as client, client.allocate(model=MODEL, inference="openai") as lease:
        assert lease.infer("Hi").text
        assert len(emulator.requests_to("POST", "/endpoints/*/v1/chat/completions")) == 2
        with pytest.raises(harpoon.NotFoundError, match="does not exist"):
            lease.infer("Hi", model="qwen3-30b-a3b")
        assert lease.state is harpoon.LeaseState.ACTIVE
        emulator.expire_allocation(lease.id)
        with pytest.raises(harpoon.AllocationError, match="was lost"):
            lease.infer("Hi")
        assert lease.state.value == "lost"


def test_the_endpoint_has_a_breaker_of_its_own(emulator: Emulator) -> None:
    emulator.faults = FaultPlan(
        rules=[Fault("error", path="/endpoints/*/v1/chat/completions", status=500)]
    )
    config = harpoon.CircuitBreakerConfig(minimum_calls=2)
    client = harpoon.HostedAI(
        "https://api.example", "sk", http_client=emulator.http_client(), circuit_breaker=config,
        max_retries=0,
    )  # fmt: skip
    with client.allocate(model=MODEL, inference="openai") as lease:
        for _ in range(2):
            with pytest.raises(harpoon.InternalServerError):
                lease.infer("Hi")
        with pytest.raises(harpoon.CircuitOpenError):
            lease.infer("Hi")
        assert client.get_allocation(lease.id).id == lease.id  # the control plane's is closed


def test_messages_on_a_hostedai_lease_are_refused(emulator: Emulator) -> None:
    client = _client(emulator)
    with client.allocate(model=MODEL) as lease, pytest.raises(harpoon.UsageError, match="openai"):
        lease.infer(messages=[{"role": "user", "content": "Hi"}])
    assert emulator.requests_to("POST", "/v1/inference") == []


def test_an_unknown_protocol_is_refused_naming_the_argument(emulator: Emulator) -> None:
    with pytest.raises(harpoon.ConfigurationError, match=r"^inference must be one of"):
        _client(emulator).allocate(model=MODEL, inference="vllm")  # type: ignore[arg-type]
    assert emulator.exchanges == []


def test_the_key_is_sent_to_the_endpoint_and_shown_nowhere(emulator: Emulator) -> None:
    with _client(emulator) as client, client.allocate(model=MODEL, inference="openai") as lease:
        with pytest.raises(harpoon.NotFoundError) as caught:
            lease.infer("Hi", model="nope")
        text = repr(lease) + str(caught.value) + repr(caught.value) + repr(lease._endpoint)
    assert "sk-secret-key" not in text
    sent = emulator.requests_to("POST", "/endpoints/*/v1/chat/completions")[0]
    assert sent.request_headers["authorization"] == "Bearer ***"  # masked in the log, sent
