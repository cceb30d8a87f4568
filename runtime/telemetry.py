"""One telemetry setup per process: the OpenTelemetry meter provider (Prometheus `/metrics` and/or
OTLP), the tracer provider (only when a traces exporter is configured), and the Temporal runtime
whose SDK metrics (schedule-to-start latency, sticky cache, slots, ...) join the same provider.

The SDK's metrics come out of Core's metric buffer, drained here once a second by one bridge for the
whole process (`_CoreMetrics`), one instrument per metric name: Core hands each worker its own copy of
a gauge, and a bridge that registered an instrument per copy would keep only the first worker's
(OpenTelemetry keeps the first observable gauge of a name), so the slots and pollers of the other
task queues would never be seen.

`setup` is idempotent: the first call in a process wins (OpenTelemetry's global providers can be set
once). `payouts worker`, `payouts webhook` and `payouts dev` call it at start; the webhook and the
worker's HTTP server call it too, so a stack built in a test exports its metrics the same way.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry import metrics, trace
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.instrumentation.aiohttp_server import AioHttpServerInstrumentor
from opentelemetry.metrics import CallbackOptions, Counter, Meter, Observation
from opentelemetry.metrics import Histogram as HistogramInstrument
from opentelemetry.sdk.metrics import Histogram, MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import DropAggregation, ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.util.types import AttributeValue
from prometheus_client import REGISTRY, generate_latest
from temporalio.client import Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.runtime import (
    BUFFERED_METRIC_KIND_COUNTER,
    BUFFERED_METRIC_KIND_GAUGE,
    BUFFERED_METRIC_KIND_HISTOGRAM,
    BufferedMetric,
    BufferedMetricUpdate,
    LogForwardingConfig,
    LoggingConfig,
    MetricBuffer,
    MetricBufferDurationFormat,
    Runtime,
    TelemetryConfig,
    TelemetryFilter,
)

from runtime import metrics as payout_metrics
from runtime.settings import TelemetrySettings

_log = logging.getLogger("payouts.telemetry")
# Temporal's latency histograms, in seconds (its SDK dashboards use the same shape).
_TEMPORAL_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# The classic text format (what generate_latest writes for our names), understood by every Prometheus.
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
# Core drops updates beyond this many between two drains (one drain a second).
_TEMPORAL_BUFFER = 50_000
_DRAIN_SECONDS = 1.0
_VIEWS = (
    # The instrumentations' own HTTP metrics carry host names and raw targets as labels; the webhook
    # records its requests by route template instead (runtime.metrics.record_http_request).
    View(meter_name="opentelemetry.instrumentation.aiohttp_server", aggregation=DropAggregation()),
    View(meter_name="opentelemetry.instrumentation.httpx", aggregation=DropAggregation()),
    View(
        meter_name="temporalio",
        instrument_type=Histogram,
        aggregation=ExplicitBucketHistogramAggregation(_TEMPORAL_BUCKETS),
    ),
)


@dataclass
class _Process:
    settings: TelemetrySettings
    resource: Resource
    meter_provider: MeterProvider
    buffer: MetricBuffer
    runtime: Runtime
    tracer_provider: TracerProvider | None = None
    core_metrics: _CoreMetrics | None = None
    # The drain of the Temporal metric buffer: one task per event loop (in practice, one).
    drains: dict[asyncio.AbstractEventLoop, asyncio.Task[None]] = field(default_factory=dict)


_process: _Process | None = None


def setup(settings: TelemetrySettings, service: str) -> None:
    """Install the meter provider (and the tracer provider when a traces exporter is set); the first
    call in a process wins."""
    global _process
    if _process is not None:
        return
    resource = Resource.create({"service.name": settings.service_name or service})
    readers: list[MetricReader] = []
    if settings.prometheus:
        # Into prometheus_client's default registry: /metrics serves it (prometheus_exposition).
        readers.append(PrometheusMetricReader(scope_info_enabled=False))
    if "otlp" in settings.metrics_exporter_set():
        exporter = OTLPMetricExporter(
            endpoint=_otlp_url(settings, "metrics"), headers=settings.otlp_header_map() or None
        )
        interval = int(settings.otlp_metrics_interval_seconds * 1000)
        readers.append(PeriodicExportingMetricReader(exporter, export_interval_millis=interval))
    provider = MeterProvider(metric_readers=readers, resource=resource, views=_VIEWS)
    metrics.set_meter_provider(provider)
    payout_metrics.create_born_series()  # the series alerts read, at 0 from now on
    buffer = MetricBuffer(_TEMPORAL_BUFFER, duration_format=MetricBufferDurationFormat.SECONDS)
    # Core's own log lines go through Python logging too, so they take the process's format (JSON lines).
    core_logs = LoggingConfig(
        filter=TelemetryFilter(core_level="WARN", other_level="ERROR"),
        forwarding=LogForwardingConfig(logger=logging.getLogger("temporalio.core")),
    )
    runtime = Runtime(telemetry=TelemetryConfig(metrics=buffer, logging=core_logs))
    _process = _Process(settings, resource, provider, buffer, runtime)
    _process.core_metrics = _CoreMetrics(buffer, provider.get_meter("temporalio"))
    if settings.traces_exporter == "console":
        install_tracing(ConsoleSpanExporter(), simple=True)
    elif settings.traces_exporter == "otlp":
        headers = settings.otlp_header_map() or None
        install_tracing(OTLPSpanExporter(endpoint=_otlp_url(settings, "traces"), headers=headers))
    _log.info(
        "telemetry: metrics %s, traces %s",
        ", ".join(sorted(settings.metrics_exporter_set())) or "off",
        settings.traces_exporter,
    )


def _otlp_url(settings: TelemetrySettings, signal: str) -> str:
    return f"{settings.otlp_endpoint.rstrip('/')}/v1/{signal}"


def is_set_up() -> bool:
    return _process is not None


# ---- traces ----------------------------------------------------------------------------------


def install_tracing(exporter: SpanExporter, *, simple: bool = False) -> None:
    """Export spans to `exporter` (tests pass an in-memory one): the tracer provider, the aiohttp
    server instrumentation of every application built from now on, and Temporal's interceptor on
    every client `runtime.temporal_client.connect` builds from now on."""
    if _process is None:
        raise RuntimeError("telemetry.setup() first")
    if _process.tracer_provider is not None:
        raise RuntimeError("tracing is installed already")
    provider = TracerProvider(resource=_process.resource)
    provider.add_span_processor(SimpleSpanProcessor(exporter) if simple else BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    with warnings.catch_warnings():
        # The instrumentor subclasses web.Application, which aiohttp discourages (a DeprecationWarning).
        warnings.simplefilter("ignore", DeprecationWarning)
        AioHttpServerInstrumentor().instrument()
    _process.tracer_provider = provider


def tracing_enabled() -> bool:
    return _process is not None and _process.tracer_provider is not None


def client_interceptors() -> list[Interceptor]:
    """Temporal client interceptors: tracing (spans and their propagation through workflows and
    activities) when it is on. Workers built from the client inherit them."""
    return [TracingInterceptor()] if tracing_enabled() else []


# ---- Temporal SDK metrics ------------------------------------------------------------------------


def temporal_runtime() -> Runtime | None:
    """The runtime whose metrics reach this process's provider; None before `setup` (the SDK's
    default runtime is used then, without metrics)."""
    if _process is None:
        return None
    _drain_on_this_loop(_process)
    return _process.runtime


def _drain_on_this_loop(process: _Process) -> None:
    loop = asyncio.get_running_loop()
    if loop in process.drains:
        return
    for stale in [old for old in process.drains if old.is_closed()]:
        del process.drains[stale]
    assert process.core_metrics is not None
    process.drains[loop] = loop.create_task(process.core_metrics.drain_forever(), name="temporal-metrics-drain")


Attributes = Mapping[str, AttributeValue]


class _CoreMetrics:
    """Core's buffered metric updates into the meter provider: one instrument per metric name, whichever
    worker (or client) the update comes from; a gauge keeps the latest value of each label set."""

    def __init__(self, buffer: MetricBuffer, meter: Meter) -> None:
        self._buffer = buffer
        self._meter = meter
        self._counters: dict[str, Counter] = {}
        self._histograms: dict[str, HistogramInstrument] = {}
        self._gauges: dict[str, dict[frozenset[tuple[str, AttributeValue]], tuple[Attributes, float]]] = {}
        self._gauge_lock = threading.Lock()  # the exporter reads gauges from its own thread

    async def drain_forever(self) -> None:
        try:
            while True:
                self.drain()
                await asyncio.sleep(_DRAIN_SECONDS)
        finally:
            self.drain()  # what was recorded until the stop

    def drain(self) -> None:
        try:
            updates = self._buffer.retrieve_updates()
        except Exception:
            _log.exception("reading the Temporal SDK's metrics failed")
            return
        for update in updates:
            try:
                self._apply(update)
            except Exception:
                _log.exception("a Temporal SDK metric could not be recorded: %s", update.metric.name)

    def _apply(self, update: BufferedMetricUpdate) -> None:
        metric, attributes = update.metric, dict(update.attributes)
        if metric.kind == BUFFERED_METRIC_KIND_COUNTER:
            self._counter(metric).add(update.value, attributes)
        elif metric.kind == BUFFERED_METRIC_KIND_HISTOGRAM:
            self._histogram(metric).record(update.value, attributes)
        elif metric.kind == BUFFERED_METRIC_KIND_GAUGE:
            values = self._gauge(metric)
            with self._gauge_lock:
                values[frozenset(attributes.items())] = (attributes, float(update.value))

    def _counter(self, metric: BufferedMetric) -> Counter:
        if metric.name not in self._counters:
            self._counters[metric.name] = self._meter.create_counter(
                metric.name, unit=metric.unit or "", description=metric.description or ""
            )
        return self._counters[metric.name]

    def _histogram(self, metric: BufferedMetric) -> HistogramInstrument:
        if metric.name not in self._histograms:
            self._histograms[metric.name] = self._meter.create_histogram(
                metric.name, unit=metric.unit or "", description=metric.description or ""
            )
        return self._histograms[metric.name]

    def _gauge(self, metric: BufferedMetric) -> dict[frozenset[tuple[str, AttributeValue]], tuple[Attributes, float]]:
        if metric.name not in self._gauges:
            values: dict[frozenset[tuple[str, AttributeValue]], tuple[Attributes, float]] = {}
            self._gauges[metric.name] = values

            def observe(_: CallbackOptions) -> Iterable[Observation]:
                with self._gauge_lock:
                    return [Observation(value, dict(attributes)) for attributes, value in values.values()]

            self._meter.create_observable_gauge(
                metric.name, callbacks=[observe], unit=metric.unit or "", description=metric.description or ""
            )
        return self._gauges[metric.name]


# ---- exposition and shutdown -----------------------------------------------------------------------


def prometheus_exposition() -> tuple[bytes, str]:
    """The Prometheus text format of this process's metrics, and its content type."""
    return generate_latest(REGISTRY), PROMETHEUS_CONTENT_TYPE


async def metrics_endpoint(request: web.Request) -> web.Response:
    """`GET /metrics` on every process that serves HTTP (webhook, worker, consumer)."""
    body, content_type = prometheus_exposition()
    return web.Response(body=body, headers={"Content-Type": content_type})


async def flush() -> None:
    """Push what the OTLP exporters and the span processor still hold (at a graceful stop)."""
    if _process is None:
        return
    loop = asyncio.get_running_loop()
    drain = _process.drains.pop(loop, None)
    if drain is not None:
        drain.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await drain
    providers: list[Any] = [_process.meter_provider, _process.tracer_provider]
    for provider in providers:
        if provider is not None:
            await asyncio.to_thread(provider.force_flush)
