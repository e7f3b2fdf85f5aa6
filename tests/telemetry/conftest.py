"""A real OpenTelemetry SDK per test: in-memory spans and metrics, fed through the seam
that the global providers (settable once per process) cannot offer."""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, Metric
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from hostedai_harpoon._telemetry import _switch
from hostedai_harpoon._telemetry._recorder import Recorder


class Telemetry:
    """What the SDK collected, with lookups by name."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        self.recorder = Recorder(self.tracer_provider, self.meter_provider)

    def spans(self) -> Sequence[ReadableSpan]:
        """The finished spans, in the order they ended."""
        return self.exporter.get_finished_spans()

    def span(self, name: str) -> ReadableSpan:
        """The one finished span called ``name``."""
        found = [span for span in self.spans() if span.name == name]
        assert len(found) == 1, f"{len(found)} spans named {name!r} in {self.names()}"
        return found[0]

    def names(self) -> list[str]:
        """The names of the finished spans."""
        return [span.name for span in self.spans()]

    def metrics(self) -> dict[str, Metric]:
        """Every metric recorded so far (cumulative), by name."""
        found: dict[str, Metric] = {}
        data = self.reader.get_metrics_data()
        if data is not None:
            for resource in data.resource_metrics:
                for scope in resource.scope_metrics:
                    for metric in scope.metrics:
                        found[metric.name] = metric
        return found

    def points(self, name: str) -> list[Any]:
        """The data points of metric ``name``."""
        return list(self.metrics()[name].data.data_points)


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    """An SDK that the package's telemetry feeds for the length of the test."""
    telemetry = Telemetry()
    previous = _switch.use(telemetry.recorder)
    try:
        yield telemetry
    finally:
        _switch.use(previous)
        telemetry.tracer_provider.shutdown()
        telemetry.meter_provider.shutdown()


@pytest.fixture
def package_logger() -> Iterator[logging.Logger]:
    """The package logger, put back as it was after the test."""
    logger = logging.getLogger("hostedai_harpoon")
    handlers, filters, level = list(logger.handlers), list(logger.filters), logger.level
    yield logger
    logger.handlers[:] = handlers
    logger.filters[:] = filters
    logger.setLevel(level)
