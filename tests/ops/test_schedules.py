"""`payouts schedules`: the reconciliation and archive-retention Schedules, created and updated
idempotently, and what they start when they fire."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import ScheduleActionStartWorkflow, ScheduleHandle, ScheduleOverlapPolicy

from console.schedules import RECONCILIATION_SCHEDULE_ID, RETENTION_SCHEDULE_ID
from ledger import ExchangeEntry, Ledger
from payouts.calendar import business_day
from payouts.models import ReconcileOutput, RetentionOutput
from tests.ops.test_cli_ops import payouts
from tests.stack import Stack

pytestmark = pytest.mark.integration

WAIT = 30.0


async def fired_result(handle: ScheduleHandle, stack: Stack, result_type: type[Any]) -> Any:
    """Trigger the schedule now and return the result of the workflow it starts."""
    before = len((await handle.describe()).info.recent_actions)
    await handle.trigger()
    async with asyncio.timeout(WAIT):
        while True:
            actions = (await handle.describe()).info.recent_actions
            if len(actions) > before:
                break
            await asyncio.sleep(0.2)
    started = actions[-1].action
    return await stack.client.get_workflow_handle(
        started.workflow_id, run_id=started.first_execution_run_id, result_type=result_type
    ).result()


async def archive(ledger: Ledger, payout_id: str) -> int:
    return await ledger.archive.record(ExchangeEntry(
        method="bills.create", request_redacted={"method": "bills.create"}, response_body="<rsp/>", http_status=200,
        outcome="answered_ok", elapsed_ms=5, payout_id=payout_id,
    ))


async def test_schedules_are_created_once_updated_after_and_run_their_workflows(stack: Stack) -> None:
    first = await payouts(stack, "schedules")
    second = await payouts(stack, "schedules")
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == [
        f"schedule {RECONCILIATION_SCHEDULE_ID}: created", f"schedule {RETENTION_SCHEDULE_ID}: created"]
    assert second.stdout.splitlines() == [
        f"schedule {RECONCILIATION_SCHEDULE_ID}: updated", f"schedule {RETENTION_SCHEDULE_ID}: updated"]

    reconciliation = stack.client.get_schedule_handle(RECONCILIATION_SCHEDULE_ID)
    retention = stack.client.get_schedule_handle(RETENTION_SCHEDULE_ID)
    try:
        described = (await reconciliation.describe()).schedule
        assert described.policy.overlap == ScheduleOverlapPolicy.SKIP
        calendar = described.spec.calendars[0]
        assert (calendar.hour[0].start, calendar.minute[0].start) == (1, 30)
        assert described.spec.time_zone_name == "Europe/Kyiv"
        action = described.action
        assert isinstance(action, ScheduleActionStartWorkflow)
        assert (action.workflow, action.task_queue) == ("ReconciliationWorkflow", stack.settings.temporal.task_queue)

        await retention.pause(note="maintenance window")
        again = await payouts(stack, "schedules")
        assert again.returncode == 0, again.stderr
        assert (await retention.describe()).schedule.state.paused  # an operator's pause survives a re-run

        report: ReconcileOutput = await fired_result(reconciliation, stack, ReconcileOutput)
        assert report.report_day == business_day(datetime.now(UTC)) - timedelta(days=1)
        stored = await stack.ledger.reconciliation_reports.get()
        assert stored is not None and stored.report_day == report.report_day and stored.counts() == report.counts

        old = Ledger(stack.ledger.engine, clock=lambda: datetime.now(UTC) - timedelta(days=91))
        old_id = await archive(old, "payout-old")
        new_id = await archive(stack.ledger, "payout-new")
        pruned: RetentionOutput = await fired_result(retention, stack, RetentionOutput)
        assert (pruned.retention_days, pruned.deleted) == (90, 1)
        assert await stack.ledger.archive.for_payout("payout-old") == []
        assert [e.id for e in await stack.ledger.archive.for_payout("payout-new")] == [new_id] and old_id != new_id
    finally:
        await reconciliation.delete()
        await retention.delete()


def test_a_retention_under_90_days_is_refused_at_start(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")}
    env.update({"PAYOUTS_ENV": "dev", "LEDGER_ARCHIVE_RETENTION_DAYS": "30"})
    for command in (["worker"], ["schedules"], ["ops", "list"]):
        run = subprocess.run([sys.executable, "-m", "console.cli", *command], env=env, cwd=tmp_path,
                             capture_output=True, text=True, timeout=60)
        assert run.returncode == 2, (command, run.stderr)
        assert run.stderr == (
            "error: invalid settings:\n  - LEDGER_ARCHIVE_RETENTION_DAYS: Input should be greater than or equal to 90\n"
        ), command
