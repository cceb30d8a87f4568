"""ReconciliationWorkflow over a seeded ledger: one case per bucket, run twice, the same report, stored
in the ledger and printed by `payouts ops report`."""

from __future__ import annotations

import csv
import io
import json
import uuid
from datetime import UTC, date, datetime, timedelta

import pytest
from temporalio.client import Client
from temporalio.common import SearchAttributePair, TypedSearchAttributes

from activities.reconcile import cutoff_for
from activities.reconcile_buckets import (
    AWAITING_PAST_SLA,
    BUCKETS,
    FAILED_WORKFLOWS,
    MULTIPLE_BILLS,
    OPEN_BILLS,
    ORPHAN_CALLBACKS,
    STATUS_MISMATCH,
)
from ledger import Ledger
from payouts import search_attributes as sa
from payouts.models import ReconcileInput, ReconcileOutput
from payouts.names import WorkflowName
from payouts.status import PayoutStatus as S
from portmone.protocol import callback_verdict
from tests import metrics
from tests.ledger.helpers import make_req
from tests.ops.test_cli_ops import payouts
from tests.stack import Stack

pytestmark = pytest.mark.integration

DAY = date(2026, 3, 10)
NOBODY = "reconcile-seed-no-worker"  # workflows on this queue never run: they only carry search attributes


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class Seeder:
    def __init__(self, stack: Stack, clock: Clock) -> None:
        self.ledger = Ledger(stack.ledger.engine, clock=clock)
        self.client: Client = stack.client
        self.tag = uuid.uuid4().hex[:8]

    async def payout(self, name: str, *, workflow_status: S | None) -> str:
        receipt = f"RC-{name}-{self.tag}"
        payout_id = (await self.ledger.payouts.reserve(make_req(receipt_id=receipt, business_day=DAY))).payout_id
        if workflow_status is not None:  # a workflow that only shows a PayoutStatus (nobody polls its queue)
            await self.client.start_workflow(
                WorkflowName.PAYOUT, id=payout_id, task_queue=NOBODY,
                search_attributes=TypedSearchAttributes([
                    SearchAttributePair(sa.PAYOUT_STATUS, workflow_status.value),
                    SearchAttributePair(sa.RECEIPT_ID, receipt),
                ]),
            )
        return payout_id

    async def bill(self, payout_id: str, round_no: int, bill_id: str) -> None:
        await self.ledger.payouts.transition(payout_id, S.BILL_REQUESTED)
        attempt = await self.ledger.attempts.begin(payout_id, round_no)
        await self.ledger.attempts.finish(attempt.id, "answered", bill_id=bill_id)
        await self.ledger.callbacks.set_bill_id(payout_id, bill_id)
        await self.ledger.payouts.transition(payout_id, S.AWAITING_CALLBACK)

    async def callback(self, bill_id: str, status: str, *, code: str | None = None, processed: bool) -> None:
        stored = await self.ledger.callbacks.store(
            dedupe_key=f"{bill_id}-{status}-{uuid.uuid4().hex}", bill_id=bill_id, raw_body="<rsp/>",
            rsp_status="fail" if code else "ok", bill_status=status, error_code=code, error_description=None,
            verdict=callback_verdict(not code, status, code).value,
        )
        if processed:
            await self.ledger.callbacks.mark_processed(stored.callback.id)


async def seed(stack: Stack) -> dict[str, str]:
    """One payout (or callback) per bucket, plus one clean payout; all on DAY, well past the SLA."""
    clock = Clock(cutoff_for(DAY) - timedelta(hours=20))
    s = Seeder(stack, clock)
    ids: dict[str, str] = {}

    ids[AWAITING_PAST_SLA] = await s.payout("awaiting", workflow_status=S.AWAITING_CALLBACK)
    await s.bill(ids[AWAITING_PAST_SLA], 1, f"B-awaiting-{s.tag}")

    ids[OPEN_BILLS] = await s.payout("open-bill", workflow_status=S.MANUAL_REVIEW)
    await s.bill(ids[OPEN_BILLS], 1, f"B-open-{s.tag}")
    await s.ledger.payouts.transition(ids[OPEN_BILLS], S.MANUAL_REVIEW, reason="callback_timeout")

    ids[STATUS_MISMATCH] = await s.payout("mismatch", workflow_status=S.AWAITING_CALLBACK)
    await s.ledger.payouts.transition(ids[STATUS_MISMATCH], S.MANUAL_REVIEW, reason="outcome_unknown")

    ids[MULTIPLE_BILLS] = await s.payout("two-bills", workflow_status=S.PAID)
    await s.bill(ids[MULTIPLE_BILLS], 1, f"B-first-{s.tag}")
    await s.callback(f"B-first-{s.tag}", "REJECTED", code="4", processed=True)
    await s.ledger.payouts.transition(ids[MULTIPLE_BILLS], S.RETRY_SCHEDULED, reason="transient:4")
    await s.bill(ids[MULTIPLE_BILLS], 2, f"B-second-{s.tag}")
    await s.callback(f"B-second-{s.tag}", "PAYED", processed=True)
    await s.ledger.payouts.transition(ids[MULTIPLE_BILLS], S.PAID)

    ids[ORPHAN_CALLBACKS] = await s.payout("closed", workflow_status=S.CANCELLED)
    await s.bill(ids[ORPHAN_CALLBACKS], 1, f"B-closed-{s.tag}")
    await s.ledger.payouts.transition(ids[ORPHAN_CALLBACKS], S.MANUAL_REVIEW, reason="callback_timeout")
    await s.ledger.payouts.transition(ids[ORPHAN_CALLBACKS], S.CANCELLED, reason="operator:fraud")
    clock.now += timedelta(hours=1)
    await s.callback(f"B-closed-{s.tag}", "PAYED", processed=False)  # money moved after the cancel
    await s.callback(f"B-unknown-{s.tag}", "PAYED", processed=False)  # a bill nobody holds

    ids[FAILED_WORKFLOWS] = await s.payout("terminated", workflow_status=S.RESERVED)
    await stack.client.get_workflow_handle(ids[FAILED_WORKFLOWS]).terminate(reason="someone pressed Terminate")

    ids["clean"] = await s.payout("clean", workflow_status=S.PAID)
    await s.bill(ids["clean"], 1, f"B-clean-{s.tag}")
    await s.callback(f"B-clean-{s.tag}", "PAYED", processed=True)
    await s.ledger.payouts.transition(ids["clean"], S.PAID)

    clock.now = cutoff_for(DAY) + timedelta(hours=2)  # after the cut-off: not part of DAY's report
    await s.payout("tomorrow", workflow_status=None)
    return ids


async def reconcile(stack: Stack) -> tuple[ReconcileOutput, bytes, bytes]:
    out: ReconcileOutput = await stack.client.execute_workflow(
        "ReconciliationWorkflow", ReconcileInput(report_day=DAY), id=f"reconcile-test-{uuid.uuid4().hex[:8]}",
        task_queue=stack.settings.temporal.task_queue, result_type=ReconcileOutput,
    )
    stored = await stack.ledger.reconciliation_reports.get(DAY)
    assert stored is not None
    return out, stored.document.encode(), stored.csv.encode()


async def test_one_case_per_bucket_and_the_same_report_twice(stack: Stack) -> None:
    ids = await seed(stack)

    first, first_json, first_csv = await reconcile(stack)
    second, second_json, second_csv = await reconcile(stack)

    assert first.counts == {
        AWAITING_PAST_SLA: 1, ORPHAN_CALLBACKS: 2, OPEN_BILLS: 1, STATUS_MISMATCH: 1, MULTIPLE_BILLS: 1,
        FAILED_WORKFLOWS: 1,
    }
    assert (second_json, second_csv) == (first_json, first_csv)
    assert second.counts == first.counts
    assert first.cutoff == datetime(2026, 3, 10, 22, 0, tzinfo=UTC)  # midnight in Kyiv (UTC+2 in March)

    report = json.loads(first_json)
    found = {bucket: [f["payout_id"] for f in report["findings"][bucket]] for bucket in BUCKETS}
    assert found[AWAITING_PAST_SLA] == [ids[AWAITING_PAST_SLA]]
    assert found[OPEN_BILLS] == [ids[OPEN_BILLS]]
    assert found[STATUS_MISMATCH] == [ids[STATUS_MISMATCH]]
    assert found[MULTIPLE_BILLS] == [ids[MULTIPLE_BILLS]]
    assert found[FAILED_WORKFLOWS] == [ids[FAILED_WORKFLOWS]]
    assert "ended TERMINATED with the ledger at RESERVED" in report["findings"][FAILED_WORKFLOWS][0]["detail"]
    assert sorted(found[ORPHAN_CALLBACKS]) == sorted(["", ids[ORPHAN_CALLBACKS]])
    mismatch = report["findings"][STATUS_MISMATCH][0]
    assert mismatch["detail"] == "ledger says MANUAL_REVIEW, workflow says AWAITING_CALLBACK"
    assert "2 bills, 1 paid" in report["findings"][MULTIPLE_BILLS][0]["detail"]
    assert all(ids["clean"] not in ids_ for ids_ in found.values())

    rows = list(csv.DictReader(io.StringIO(first_csv.decode())))
    assert len(rows) == 7 and {r["bucket"] for r in rows} == set(BUCKETS)
    exposed = metrics.in_process()
    for bucket, count in first.counts.items():
        assert exposed.value("payout_reconciliation_findings", bucket=bucket) == count


async def test_payouts_ops_report_prints_the_latest_stored_report(stack: Stack) -> None:
    """Any operator, on any machine that reaches the ledger, reads what a worker replica stored."""
    missing = await payouts(stack, "ops", "report")
    assert missing.returncode == 1 and "no reconciliation report stored yet" in missing.stderr

    await seed(stack)
    out, document, csv_text = await reconcile(stack)
    earlier = DAY - timedelta(days=1)
    await stack.ledger.reconciliation_reports.save(
        report_day=earlier, cutoff=cutoff_for(earlier), findings=0, document='{"counts": {}}', csv="bucket\n"
    )

    text = await payouts(stack, "ops", "report")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"Reconciliation of {DAY} (cut-off 2026-03-10 22:00 UTC") and "7 finding(s)" in lines[0]
    for bucket, count in out.counts.items():
        assert any(line.split() == [bucket, str(count)] for line in lines), bucket
    assert "ended TERMINATED with the ledger at RESERVED" in text.stdout

    as_json = await payouts(stack, "ops", "report", "--day", DAY.isoformat(), "--format", "json")
    assert as_json.stdout.encode() == document
    as_csv = await payouts(stack, "ops", "report", "--day", DAY.isoformat(), "--format", "csv")
    assert as_csv.stdout.encode() == csv_text
    older = await payouts(stack, "ops", "report", "--day", earlier.isoformat(), "--format", "csv")
    assert older.stdout == "bucket\n"

    none = await payouts(stack, "ops", "report", "--day", "2020-01-01")
    assert none.returncode == 1 and "no reconciliation report stored for 2020-01-01" in none.stderr
