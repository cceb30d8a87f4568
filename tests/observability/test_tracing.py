"""With tracing on, one payout is one trace from the intake request through the workflow and
`create_bill` to the Portmone POST, and a callback is one trace from its request to the signal.

Tracing is process-wide: this test installs an in-memory exporter for the rest of the session and
shuts it down at the end (later spans are dropped).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from temporalio.testing import WorkflowEnvironment

from payouts.status import PayoutStatus as S
from runtime import telemetry
from runtime.settings import Settings, TemporalSettings
from runtime.temporal_client import connect
from tests.integration.conftest import short_policy
from tests.stack import running_stack, stack_crypto

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    telemetry.install_tracing(exporter, simple=True)
    yield exporter
    exporter.shutdown()


def named(spans: list[ReadableSpan], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def ancestors(span: ReadableSpan, by_id: dict[int, ReadableSpan]) -> list[str]:
    found: list[str] = []
    parent = span.parent
    while parent is not None and parent.span_id in by_id:
        up = by_id[parent.span_id]
        found.append(up.name)
        parent = up.parent
    return found


async def test_one_trace_from_intake_to_the_portmone_post(
    spans: InMemorySpanExporter, dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    settings = Settings(
        env="dev", temporal=TemporalSettings(address=dev_env.client.service_client.config.target_host),
        crypto=stack_crypto(),
    )
    client = await connect(settings)  # with tracing on, the client carries Temporal's tracing interceptor
    async with running_stack(client, tmp_path, read_timeout=2.0, payout=short_policy()) as stack:
        handle = await stack.submit()
        assert (await stack.wait_status(handle, {S.PAID}, timeout=60)).status == S.PAID
        workflow_type = (await handle.describe()).workflow_type

    finished = list(spans.get_finished_spans())
    by_id = {s.context.span_id: s for s in finished}
    [intake] = [s for s in named(finished, "POST /v1/receipts/accepted") if s.kind == SpanKind.SERVER]
    trace = [s for s in finished if s.context.trace_id == intake.context.trace_id]
    names = {s.name for s in trace}
    for expected in (
        f"StartWorkflow:{workflow_type}",
        f"RunWorkflow:{workflow_type}",
        "StartActivity:portmone.create_bill",
        "RunActivity:portmone.create_bill",
    ):
        assert expected in names, f"{expected} not in the intake's trace: {sorted(names)}"
    posts = [s for s in trace if s.kind == SpanKind.CLIENT and s.name == "POST"]
    portmone = [s for s in posts if "/api/directcash/" in str((s.attributes or {}).get("url.full", ""))
                or "/api/directcash/" in str((s.attributes or {}).get("http.url", ""))]
    assert portmone, f"no Portmone POST in the trace: {[(s.name, dict(s.attributes or {})) for s in posts]}"
    chain = ancestors(portmone[0], by_id)
    assert "RunActivity:portmone.create_bill" in chain and chain[-1] == "POST /v1/receipts/accepted", chain
    for span in trace:  # no phone, no password in any attribute
        text = repr(dict(span.attributes or {}))
        assert "380001234567" not in text and "dev-password" not in text, span.name

    # The callback: its request and the signal it sends are one trace.
    [callback] = [s for s in named(finished, "POST /portmone/callback") if s.kind == SpanKind.SERVER]
    signals = [s for s in named(finished, "SignalWorkflow:portmone_callback")
               if s.context.trace_id == callback.context.trace_id]
    assert signals and "POST /portmone/callback" in ancestors(signals[0], by_id)
