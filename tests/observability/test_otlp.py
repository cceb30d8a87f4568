"""`TELEMETRY_METRICS_EXPORTERS=otlp` and `TELEMETRY_TRACES_EXPORTER=otlp` push to the collector at
`TELEMETRY_OTLP_ENDPOINT` (OTLP over HTTP, protobuf), with `TELEMETRY_OTLP_HEADERS`. A process of
its own (telemetry is set up once per process) sends to a collector stand-in started by the test."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

from aiohttp import web
from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import ExportMetricsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

PROBE = """
import asyncio
from opentelemetry import trace
from runtime import metrics, telemetry
from runtime.settings import TelemetrySettings
from payouts.status import PayoutStatus

async def main() -> None:
    telemetry.setup(TelemetrySettings(), "payouts-probe")
    metrics.record_payout_outcome(PayoutStatus.PAID)
    with trace.get_tracer("probe").start_as_current_span("probe-span"):
        pass
    await telemetry.flush()

asyncio.run(main())
"""


async def test_metrics_and_spans_reach_an_otlp_collector(tmp_path: Path) -> None:
    received: dict[str, list[tuple[bytes, str | None]]] = {"/v1/metrics": [], "/v1/traces": []}

    async def collect(request: web.Request) -> web.Response:
        received[request.path].append((await request.read(), request.headers.get("X-Collector-Key")))
        return web.Response(status=200, content_type="application/x-protobuf")

    app = web.Application()
    app.router.add_post("/v1/metrics", collect)
    app.router.add_post("/v1/traces", collect)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    env = {
        **os.environ,
        "TELEMETRY_METRICS_EXPORTERS": "otlp",
        "TELEMETRY_TRACES_EXPORTER": "otlp",
        "TELEMETRY_OTLP_ENDPOINT": f"http://127.0.0.1:{port}",
        "TELEMETRY_OTLP_HEADERS": "X-Collector-Key=k-123",
    }
    try:
        probe = await asyncio.create_subprocess_exec(
            sys.executable, "-c", PROBE, env=env, cwd=tmp_path,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        output, _ = await asyncio.wait_for(probe.communicate(), timeout=60)
        assert probe.returncode == 0, output.decode()
    finally:
        await runner.cleanup()

    assert received["/v1/metrics"] and {key for _, key in received["/v1/metrics"]} == {"k-123"}
    exported = [ExportMetricsServiceRequest.FromString(body) for body, _ in received["/v1/metrics"]]
    resource_metrics = [rm for request in exported for rm in request.resource_metrics]
    names = {m.name for rm in resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert "payout_success" in names
    attributes = [a for rm in resource_metrics for a in rm.resource.attributes]
    service = {a.value.string_value for a in attributes if a.key == "service.name"}
    assert service == {"payouts-probe"}

    spans = [
        span.name
        for payload, _ in received["/v1/traces"]
        for rs in ExportTraceServiceRequest.FromString(payload).resource_spans
        for ss in rs.scope_spans
        for span in ss.spans
    ]
    assert spans == ["probe-span"]
