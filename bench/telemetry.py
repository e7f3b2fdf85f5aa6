"""What the telemetry costs per call: with no SDK configured, and with one.

Run ``python bench/telemetry.py``. The call is ``HostedAI.infer`` over the emulator's
in-process transport (no socket noise). Calls are timed one by one in rounds that
alternate between the variants compared (and which goes first), with the garbage collector
held between collections; each figure is the median call.

* **No SDK, as shipped, against instrumentation bypassed.** Bypassed means the telemetry
  entry points (``_telemetry.start_call`` and the other ``start_*``) replaced by functions
  that hand back the shared no-op objects without looking at anything. Target: a ratio of
  at most 1.03.
* **The whole hook sequence of a call, no SDK.** The hooks one inference makes
  (``start_call``, ``attempt_started``, ``attempt_ended``, ``succeeded``), timed in a tight
  loop, as a share of the bypassed call: ``1 + hooks / call``. This counts the no-op
  method calls that the bypass above still makes. Target: at most 1.03.
* **With the SDK** (a tracer provider with an in-memory exporter, a meter provider with an
  in-memory reader) against no SDK: reported, no target.

Prints PASS or FAIL for each target; the exit status is 1 when one is missed.
"""

from __future__ import annotations

import gc
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager

import httpx
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import hostedai_harpoon as harpoon
from hostedai_harpoon import _telemetry
from hostedai_harpoon._benchmarks import record
from hostedai_harpoon._models import InferenceResult, Usage
from hostedai_harpoon._telemetry import _hooks, _switch
from hostedai_harpoon._telemetry._recorder import Recorder
from hostedai_harpoon.testing import Emulator

ROUNDS = 60
CALLS_PER_ROUND = 40
WARMUP_CALLS = 300
HOOK_LOOPS = 20_000
TARGET = 1.03

BASE_URL = "http://127.0.0.1:8080"
MODEL = "gemma-3-270m"
PROMPT = "Summarise the incident report in three sentences."
MAX_TOKENS = 32

Call = Callable[[], object]
Variant = Callable[[], AbstractContextManager[None]]

_BYPASS = {
    "start_call": lambda *args, **kwargs: _hooks.NO_CALL,
    "start_allocation": lambda *args, **kwargs: _hooks.NO_ALLOCATION,
    "start_span": lambda *args, **kwargs: _hooks.NO_SPAN,
    "start_route": lambda *args, **kwargs: _hooks.NO_ROUTE,
}


@contextmanager
def bypassed() -> Iterator[None]:
    """The telemetry entry points replaced by ones that look at nothing."""
    saved = {name: getattr(_telemetry, name) for name in _BYPASS}
    for name, stub in _BYPASS.items():
        setattr(_telemetry, name, stub)
    try:
        yield
    finally:
        for name, original in saved.items():
            setattr(_telemetry, name, original)


@contextmanager
def with_sdk(exporter: InMemorySpanExporter) -> Iterator[None]:
    """Telemetry fed to an SDK with in-memory export."""
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    previous = _switch.use(Recorder(tracer_provider, meter_provider))
    try:
        yield
    finally:
        _switch.use(previous)


@contextmanager
def as_shipped() -> Iterator[None]:
    """Nothing changed: no SDK configured."""
    yield


def compare(call: Call, variants: list[Variant]) -> list[float]:
    """Median seconds per call under each variant."""
    times: list[list[float]] = [[] for _ in variants]
    clock = time.perf_counter
    for _ in range(WARMUP_CALLS):
        call()
    gc.collect()
    gc.disable()
    try:
        for round_number in range(ROUNDS):
            order = list(enumerate(variants))
            if round_number % 2:
                order.reverse()
            for index, variant in order:
                with variant():
                    into = times[index]
                    for _ in range(CALLS_PER_ROUND):
                        started = clock()
                        call()
                        into.append(clock() - started)
            if round_number % 10 == 9:
                gc.enable()
                gc.collect()
                gc.disable()
    finally:
        gc.enable()
    return [statistics.median(series) for series in times]


def hook_sequence_seconds() -> float:
    """Seconds per inference's worth of hook calls, no SDK configured."""
    operation = _hooks.Operation("text_completion", "/v1/inference", genai=True)
    body = {"allocation_id": "a", "prompt": PROMPT, "max_tokens": MAX_TOKENS}
    request = httpx.Request("POST", f"{BASE_URL}/v1/inference")
    result = InferenceResult(
        id="i",
        allocation_id="a",
        model=MODEL,
        text="t",
        finish_reason="stop",
        usage=Usage(1, 1),
        latency=0.0,
    )
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(HOOK_LOOPS):
            call = _telemetry.start_call(operation, body)
            call.attempt_started(0, request)
            call.attempt_ended(200)
            call.succeeded(result)
        best = min(best, (time.perf_counter() - started) / HOOK_LOOPS)
    return best


def verdict(ratio: float) -> str:
    return "PASS" if ratio <= TARGET else "FAIL"


def main() -> int:
    emulator = Emulator()
    client = harpoon.HostedAI(BASE_URL, "bench-key", http_client=emulator.http_client())
    allocation_id = client.create_allocation(model=MODEL).id
    exporter = InMemorySpanExporter()

    def call() -> object:
        return client.infer(allocation_id, PROMPT, max_tokens=MAX_TOKENS)

    def sdk() -> AbstractContextManager[None]:
        exporter.clear()
        return with_sdk(exporter)

    shipped, bypass, traced = compare(call, [as_shipped, bypassed, sdk])
    off_ratio = shipped / bypass
    hooks = hook_sequence_seconds()
    hook_ratio = 1 + hooks / bypass
    print(
        f"no SDK      as shipped {shipped * 1e6:8.1f} us   bypassed {bypass * 1e6:8.1f} us   "
        f"ratio {off_ratio:.3f} (target <= {TARGET})  {verdict(off_ratio)}"
    )
    print(
        f"hooks       {hooks * 1e6:8.2f} us per call, no SDK   "
        f"ratio {hook_ratio:.3f} (target <= {TARGET})  {verdict(hook_ratio)}"
    )
    print(
        f"with SDK    in-memory  {traced * 1e6:8.1f} us   no SDK   {shipped * 1e6:8.1f} us   "
        f"ratio {traced / shipped:.3f} (reported, no target)"
    )
    record(
        "telemetry, no SDK: HostedAI.infer",
        off_ratio,
        baseline="the same call, telemetry entry points bypassed (median call)",
        target=f"<= {TARGET}",
        passed=off_ratio <= TARGET,
    )
    record(
        "telemetry, no SDK: a call's hooks",
        hook_ratio,
        baseline="1 + hook time / the bypassed call",
        target=f"<= {TARGET}",
        passed=hook_ratio <= TARGET,
    )
    record(
        "telemetry, SDK with in-memory export: HostedAI.infer",
        traced / shipped,
        baseline="the same call, no SDK (median call)",
    )
    client.close()
    return 0 if off_ratio <= TARGET and hook_ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
