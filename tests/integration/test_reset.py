"""An engineer's Reset (the Web UI's Reset button, `temporal workflow reset`) makes a new run of the same
payout: it must follow the ledger and its evidence, never take itself for a duplicate of its own receipt,
never decide eligibility again, and hand an operator every bill that may hold money (issue: "Money safety
where people, recovery tools and the queue step in", defects 1 and 4). On the dev server: the Java test
server does not reset."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowExecutionStatus, WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from payouts.models import OperatorCancel, OperatorRetry
from payouts.names import UpdateName
from payouts.status import PayoutStatus as S
from tests.faults import eventually
from tests.integration.conftest import short_policy
from tests.promises import breaches
from tests.stack import Stack, running_stack
from tests.workflows.test_operator_updates import refused, update

Handle = WorkflowHandle[Any, Any]
OPEN_BILL = {"drop_callback": True, "callback_status": "CREATED"}


async def test_a_reset_payout_follows_the_ledger_instead_of_rejecting_itself(stack: Stack) -> None:
    handle = await stack.submit()
    assert (await stack.wait_status(handle, {S.PAID})).status == S.PAID
    latest = await stack.reset(handle)

    async def closed() -> bool:
        return (await latest.describe()).status != WorkflowExecutionStatus.RUNNING

    await eventually(closed)
    result = await latest.result()
    assert (await latest.describe()).status == WorkflowExecutionStatus.COMPLETED
    assert result.status == S.PAID and result.rejection_reason is None  # not "duplicate_receipt"
    assert len(await stack.creates()) == 1
    assert [h.to_status for h in await stack.ledger.payouts.history(handle.id)][-1] == S.PAID


async def test_a_reset_after_the_receipt_aged_follows_the_ledger_and_pays_once(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    """Eligible at intake, past PAYOUT_ELIGIBILITY_DAYS by the time of the Reset: the new run answers from
    the ledger's row (its bill waits for its callback) instead of rejecting a payout the ledger holds open."""
    policy = short_policy(eligibility_days=1)
    async with running_stack(dev_env.client, tmp_path, read_timeout=2.0, telecom=True, payout=policy) as stack:
        await stack.faults(OPEN_BILL)
        accepted = datetime.now(UTC) - timedelta(days=1) + timedelta(seconds=8)
        handle = await stack.submit(accepted_at=accepted.isoformat())
        first = await stack.wait_status(handle, {S.AWAITING_CALLBACK})
        await asyncio.sleep(max(0.0, (accepted + timedelta(days=1) - datetime.now(UTC)).total_seconds()) + 1)

        latest = await stack.reset(handle)
        followed = await stack.wait_status(latest, {S.AWAITING_CALLBACK, S.REJECTED})
        assert followed.status == S.AWAITING_CALLBACK and followed.rejection_reason is None, followed
        assert followed.bill_id == first.bill_id
        assert (await stack.paid_at_portmone(str(first.bill_id))).status_code == 200
        paid = await stack.wait_status(latest, {S.PAID})

        assert paid.bill_id == first.bill_id
        assert len(await stack.creates()) == 1
        row = await stack.ledger.payouts.get(handle.id)
        assert row is not None and row.status == S.PAID and row.bill_id == first.bill_id


async def test_a_reset_run_in_manual_review_holds_the_evidence(stack: Stack) -> None:
    """The answer to bills.create was lost: the payout waits in manual review with the attempt as evidence.
    After a Reset the new run lists that evidence too, so `cancel` still needs the confirmation."""
    await stack.faults({"commit_then_hang": {"times": 1}, **OPEN_BILL})
    handle = await stack.submit()
    before = await stack.wait_status(handle, {S.MANUAL_REVIEW}, timeout=60)
    assert before.open_bills

    for to in ("first", "last"):
        latest = await stack.reset(handle, to=to)
        after = await stack.wait_status(latest, {S.MANUAL_REVIEW})
        assert after.open_bills == before.open_bills, (to, after)
        assert after.escalation_reason == before.escalation_reason
        message = await refused(latest, UpdateName.CANCEL, OperatorCancel(operator="olena", reason="give up"))
        assert "may hold money" in message, message
        handle = latest
    assert len(await stack.creates()) == 1


async def test_a_reset_telecom_failure_retries_only_the_top_up(stack: Stack) -> None:
    """Portmone paid and the top-up failed: after a Reset, `retry` still repeats only the top-up."""
    await stack.faults({"telecom_fail": {"times": 1, "status": 400}})
    handle = await stack.submit()
    assert (await stack.wait_status(handle, {S.MANUAL_REVIEW})).escalation_reason == "telecom_failed"

    latest = await stack.reset(handle)
    assert (await stack.wait_status(latest, {S.MANUAL_REVIEW})).escalation_reason == "telecom_failed"
    result = await update(latest, UpdateName.RETRY, OperatorRetry(operator="olena", reason="telecom is back"))

    assert result.accepted and "top-up repeated" in result.message, result
    assert (await stack.wait_status(latest, {S.PAID})).status == S.PAID
    assert len(await stack.creates()) == 1
    assert len([t for t in await stack.record("telecom") if t.get("http_status") == 200]) == 1


async def test_a_reset_after_a_person_closed_the_payout_follows_the_ledger(stack: Stack) -> None:
    """An operator's cancel closed the payout; then an engineer resets it to its last workflow task, where
    the decision came, and to its first. The Reset re-delivers the decision (an update, as the Web UI's
    and the CLI's Reset do by default); each new run ends CANCELLED with the ledger, none waits in manual
    review for a decision the ledger already holds. (Found by `bench.soak`, with a Reset that excluded
    updates: docs/runbook.md, "Reset", says why not to.)"""
    await stack.faults({"callback_status": "REJECTED", "callback_error_code": "30"})
    receipt = stack.receipt()["receipt_id"]
    handle = await stack.submit(receipt_id=receipt)
    await stack.wait_status(handle, {S.MANUAL_REVIEW})
    decided = await update(handle, UpdateName.CANCEL, OperatorCancel(operator="olena", reason="giving up"))
    assert decided.accepted, decided.message
    assert (await handle.result()).status == S.CANCELLED

    for to in ("last", "first"):
        latest = await stack.reset(handle, to=to)
        result = await asyncio.wait_for(latest.result(), 30)
        assert result.status == S.CANCELLED, (to, result.status, result.escalation_reason)
        assert (await latest.describe()).status == WorkflowExecutionStatus.COMPLETED
        handle = latest
    assert [h.to_status for h in await stack.ledger.payouts.history(handle.id)][-1] == S.CANCELLED
    assert len(await stack.creates()) == 1
    # Every promise, the re-delivered decisions answered in each run included.
    assert await breaches(stack.ledger, stack.http, stack.sandbox_url, stack.client, [receipt]) == []
