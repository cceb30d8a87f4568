"""After one paid and one failed payout on the dev server, `/metrics` of the webhook and of a real
`payouts worker` process show every named series with the expected counts (the exposition format
parsed, never string-matched), and the worker's JSON log lines carry the payout's ids as fields with
no phone number or password anywhere.

The webhook runs in this process (its counters are compared before and after); the worker is a
separate process started for this test, so its counts are exact.
"""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from payouts.status import PayoutStatus as S
from runtime import devdefaults
from runtime.logs import PayoutIdsFilter, formatter
from tests.integration.conftest import short_policy
from tests.metrics import Exposition
from tests.stack import TEST_PHONE, Stack, free_port, running_stack, settings_env
from tests.test_deploy import TEMPORAL_SDK_AFTER_A_PAYOUT
from workflows.payout_calls import NOTIFY_TASK_QUEUE, PORTMONE_TASK_QUEUE

pytestmark = pytest.mark.integration

# What must never appear in a log line or a label: the phone in any form, the Portmone password.
SECRETS = (TEST_PHONE, TEST_PHONE[3:], devdefaults.DEV_PORTMONE_PASSWORD)
OUR_LOGGERS = ("payouts", "portmone", "temporalio.activity", "temporalio.workflow")


def start_worker(stack: Stack, metrics_port: int, log: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **settings_env(stack.settings),
        "WORKER_METRICS_PORT": str(metrics_port),
        "WORKER_LEDGER_GAUGES_INTERVAL_SECONDS": "0.5",
        "TELEMETRY_LOG_FORMAT": "json",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "console.cli", "--log-level", "DEBUG", "worker"],
        env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
    )


async def scrape(http: httpx.AsyncClient, url: str) -> Exposition:
    response = await http.get(f"{url}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return Exposition.parse(response.text)


async def scrape_until(
    http: httpx.AsyncClient, url: str, ready: Callable[[Exposition], bool], timeout: float = 30
) -> Exposition:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last: Exposition | None = None
    while loop.time() < deadline:
        try:
            last = await scrape(http, url)
            if ready(last):
                return last
        except httpx.TransportError:
            pass
        await asyncio.sleep(0.25)
    raise AssertionError(f"{url}/metrics never got there; last scrape: {last}")


@contextmanager
def json_log_of_this_process() -> Iterator[io.StringIO]:
    """The webhook's log lines in this process, as `TELEMETRY_LOG_FORMAT=json` writes them."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter("json"))
    handler.addFilter(PayoutIdsFilter())
    payouts = logging.getLogger("payouts")
    level = payouts.level
    payouts.setLevel(logging.DEBUG)
    logging.getLogger().addHandler(handler)
    try:
        yield out
    finally:
        logging.getLogger().removeHandler(handler)
        payouts.setLevel(level)


def label_values(exposition: Exposition) -> set[str]:
    return {value for samples in exposition.samples.values() for labels, _ in samples for value in labels.values()}


async def test_metrics_and_logs_of_a_paid_and_a_failed_payout(dev_env: WorkflowEnvironment, tmp_path: Path) -> None:
    async with running_stack(dev_env.client, tmp_path, workers=False, read_timeout=2.0, payout=short_policy()) as stack:
        metrics_port = free_port()
        worker_url = f"http://127.0.0.1:{metrics_port}"
        worker_log = tmp_path / "worker.log"
        worker = start_worker(stack, metrics_port, worker_log)
        try:
            # Up, connected, and the ledger gauges read once: an empty manual-review queue.
            before = await scrape_until(stack.http, worker_url, lambda e: e.has("payout_manual_review_queue_size"))
            assert before.value("payout_manual_review_queue_size") == 0
            assert before.value("payout_success_total") == 0
            assert before.value("portmone_request_total") == 0
            webhook_before = await scrape(stack.http, stack.internal_url)

            with json_log_of_this_process() as webhook_log:
                paid = await stack.submit()
                assert (await stack.wait_status(paid, {S.PAID}, timeout=60)).status == S.PAID
                # The second bill is refused for good, in protocol version 1: a person decides.
                await stack.faults({"fail_codes": {"20": {"times": 1}}, "version1_fallback": {"times": 1}})
                failed = await stack.submit()
                view = await stack.wait_status(failed, {S.MANUAL_REVIEW}, timeout=60)
                assert view.escalation_reason == "permanent_error:20"

            after = await scrape_until(
                stack.http, worker_url,
                lambda e: e.value("payout_manual_review_queue_size") == 1
                and e.value("temporal_workflow_completed_total") >= 1,
            )
            webhook_after = await scrape(stack.http, stack.internal_url)
        finally:
            worker.send_signal(signal.SIGTERM)
            worker.wait(30)
        assert worker.returncode == 0, worker_log.read_text()[-3000:]

    # ---- the worker: Portmone, outcomes, the queue, Temporal's own --------------------------------
    assert after.value("portmone_request_total", method="bills.create") == 2
    assert after.value("portmone_fail_total", code="20") == 1
    assert after.value("portmone_fail_total") == 1
    assert after.value("portmone_v1_fallback_total", source="bills.create") == 1
    assert after.value("portmone_request_duration_seconds_count", outcome="answered_ok") == 1
    assert after.value("portmone_request_duration_seconds_count", outcome="answered_fail") == 1
    assert after.value("payout_success_total") == 1
    assert after.value("payout_failure_total", reason="permanent_error") == 1
    assert after.value("payout_failure_total") == 1
    assert after.value("payout_timeout_total") == 0
    assert after.value("payout_manual_review_queue_size") == 1
    assert after.value("payout_manual_review_oldest_age_seconds") >= 0
    assert after.has("payout_manual_review_oldest_age_seconds")
    for name in (
        "temporal_workflow_task_schedule_to_start_latency_seconds_count",
        "temporal_activity_schedule_to_start_latency_seconds_count",
        "temporal_workflow_completed_total",
    ):
        assert after.value(name) > before.value(name), name
    # Every SDK metric the alerts and dashboards expect after a payout is there, under the name they use.
    for name in TEMPORAL_SDK_AFTER_A_PAYOUT:
        assert after.has(name) or after.has(f"{name}_count"), name
    # Every worker's gauges, not only the first one's: the three task queues of `payouts worker`.
    queues = {stack.settings.temporal.task_queue, PORTMONE_TASK_QUEUE, NOTIFY_TASK_QUEUE}
    for gauge in ("temporal_worker_task_slots_available", "temporal_worker_task_slots_used", "temporal_num_pollers"):
        assert after.label_values(gauge, "task_queue") >= queues, (gauge, after.label_values(gauge, "task_queue"))
    assert after.value("temporal_worker_task_slots_available", task_queue=PORTMONE_TASK_QUEUE) > 0
    assert after.value("temporal_num_pollers", task_queue=NOTIFY_TASK_QUEUE) > 0

    # ---- the webhook: intake, the callback, its latency ------------------------------------------------
    def moved(name: str, **labels: str) -> float:
        return webhook_after.value(name, **labels) - webhook_before.value(name, **labels)

    intake = {"route": "/v1/receipts/accepted", "method": "POST", "status": "202"}
    assert moved("webhook_http_request_duration_seconds_count", **intake) == 2
    assert moved("webhook_http_request_duration_seconds_count", route="/portmone/callback", status="200") == 1
    assert moved("portmone_callbacks_total", result="delivered") == 1
    assert moved("portmone_callback_latency_seconds_count") == 1
    assert 0 < moved("portmone_callback_latency_seconds_sum") < 30

    # ---- no id, phone or free text as a label --------------------------------------------------------
    for exposition in (after, webhook_after):
        for value in label_values(exposition):
            assert "payout-" not in value and paid.id.removeprefix("payout-") not in value, value
            assert not any(secret in value for secret in SECRETS), value

    # ---- logs: JSON lines, ids as fields, nothing secret -------------------------------------------------
    worker_text = worker_log.read_text()
    assert not any(secret in worker_text for secret in SECRETS)
    lines = [json.loads(line) for line in worker_text.splitlines() if line.strip()]
    receipt = paid.id.removeprefix("payout-")
    about_paid = [line for line in lines if line.get("payout_id") == paid.id]
    assert about_paid, "no worker line carries the paid payout's id"
    for line in lines:
        # Our lines and the SDK's activity/workflow loggers (its internal debug lines quote raw task tokens).
        ours = line["logger"].startswith(OUR_LOGGERS)
        if ours and (paid.id in line["message"] or receipt in line["message"]):
            assert line.get("payout_id") == paid.id and line.get("receipt_id") == receipt, line
            assert line.get("workflow_id") == paid.id, line
    portmone = [line for line in about_paid if line["logger"] == "portmone"]
    assert any("AnsweredOk" in line["message"] for line in portmone)
    assert all(line.get("telegram_id") == "4242" for line in portmone)
    exchange = [line for line in portmone if line["level"] == "DEBUG" and "request=" in line["message"]]
    assert exchange and "***" in exchange[0]["message"]  # the password, redacted
    assert any(line.get("bill_id") for line in about_paid)

    webhook_lines = [json.loads(line) for line in webhook_log.getvalue().splitlines()]
    assert not any(secret in webhook_log.getvalue() for secret in SECRETS)
    intake_lines = [line for line in webhook_lines if line["logger"] == "payouts.webhook.intake"
                    and line.get("payout_id") == paid.id]
    assert intake_lines
    assert intake_lines[0]["receipt_id"] == receipt and intake_lines[0]["telegram_id"] == "4242"
    callback_lines = [line for line in webhook_lines if line["logger"] == "payouts.webhook.callback"]
    assert callback_lines and all(line.get("bill_id") for line in callback_lines)

