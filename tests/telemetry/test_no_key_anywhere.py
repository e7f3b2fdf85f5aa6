"""The API key appears in no exported span attribute, event, status, metric attribute or log
record, whatever the calls did: succeeded, retried, failed, streamed, leased, refused."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan

import hostedai_harpoon as harpoon
from hostedai_harpoon._telemetry import _logging
from hostedai_harpoon.testing import Emulator, Fault, FaultPlan
from tests.client._support import BASE_URL, Flavor, call, close, take
from tests.telemetry.conftest import Telemetry

KEY = "hk-live-LEAKCANARY-5e0c2f8b9d41a7"
MODEL = "gemma-3-270m"
FAULTS = FaultPlan(
    rules=[
        Fault("error", status=503, path="/v1/pools", times=1),
        Fault("error", status=500, path="/v1/inference", times=1),
    ]
)
FAST = harpoon.RetryPolicy(max_retries=2, initial_backoff=0.001, max_backoff=0.001)


def span_texts(span: ReadableSpan) -> Iterator[str]:
    yield span.name
    yield str(span.status.description)
    for value in (span.attributes or {}).values():
        yield str(value)
    for event in span.events:
        yield event.name
        for value in (event.attributes or {}).values():
            yield str(value)
    for value in span.resource.attributes.values():
        yield str(value)


def every_exported_text(otel: Telemetry, records: list[logging.LogRecord]) -> list[str]:
    texts = [text for span in otel.spans() for text in span_texts(span)]
    for metric in otel.metrics().values():
        texts.append(metric.name)
        for point in metric.data.data_points:
            texts += [f"{name}={value!s}" for name, value in (point.attributes or {}).items()]
    for record in records:
        texts.append(record.getMessage())
        texts.append(str(record.exc_text))
    return texts


async def run_everything(flavor: Flavor) -> None:
    emu = Emulator(faults=FAULTS, api_keys={KEY})
    http = emu.http_client() if flavor == "sync" else emu.async_http_client()
    Client = harpoon.HostedAI if flavor == "sync" else harpoon.AsyncHostedAI
    client = Client(BASE_URL, KEY, http_client=http, retry=FAST)  # type: ignore[arg-type]
    await call(client, "list_pools")  # retried once
    allocation = await call(client, "create_allocation", model=MODEL)
    with pytest.raises(harpoon.InternalServerError):
        await call(client, "infer", allocation.id, f"my key is {KEY}", model=MODEL)
    await call(client, "infer", allocation.id, f"Bearer {KEY} says hi", model=MODEL)
    await take(await call(client, "stream", allocation.id, f"again {KEY}", model=MODEL))
    await call(client, "release_allocation", allocation.id)
    wrong = Client(BASE_URL, "not-the-key-0000", http_client=http)  # type: ignore[arg-type]
    with pytest.raises(harpoon.AuthenticationError):
        await call(wrong, "list_allocations")
    await close(wrong)
    await close(client)
    if isinstance(http, httpx.AsyncClient):
        await http.aclose()
    else:
        http.close()


@pytest.mark.parametrize("flavor", ["sync", "async"])
async def test_the_key_is_nowhere_in_spans_metrics_or_logs(
    otel: Telemetry,
    flavor: Flavor,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
    package_logger: logging.Logger,
) -> None:
    monkeypatch.setenv("OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT", "true")
    _logging.configure_logging({"HOSTED_AI_LOG": "debug"})
    with caplog.at_level(logging.DEBUG):
        await run_everything(flavor)
    if flavor == "sync":
        with (
            harpoon.HostedAI(
                BASE_URL, KEY, http_client=Emulator(api_keys={KEY}).http_client()
            ) as client,
            client.allocate(model=MODEL) as lease,
        ):
            lease.infer(f"lease {KEY}")

    texts = every_exported_text(otel, caplog.records)
    texts.append(capsys.readouterr().err)
    assert [text for text in texts if KEY in text] == []
    # The search had something to search: spans of every kind, metrics, logs, and the
    # captured prompts, masked.
    assert len(otel.spans()) >= 12
    assert len(caplog.records) >= 5
    assert any("my key is ***" in text for text in texts)
    assert any("Bearer *** says hi" in text for text in texts)
