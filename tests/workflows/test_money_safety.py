"""Money safety under fault sequences, one regression per defect found in review (issue: "Money safety
under every fault sequence"). Virtual time on the Java test server; the real sandbox, webhook, ledger
and workers; faults the sandbox cannot make come from tests.faults (ledger outages, a worker dying
after Portmone answered, a Temporal the webhook cannot reach)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import WorkflowExecutionStatus, WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from payouts.models import OperatorCancel, OperatorMarkPaid, OperatorResult, OperatorRetry, bill_comment
from payouts.names import UpdateName
from payouts.status import PayoutStatus as S
from runtime.settings import PayoutSettings
from sandbox import rsp
from sandbox.state import SimBill
from tests import metrics
from tests.faults import eventually
from tests.stack import TEST_PHONE, Stack, running_stack
from tests.workflows.conftest import BACKOFF, CALLBACK_TIMEOUT, REMINDER
from tests.workflows.test_operator_updates import operator_rows, refused, update

Handle = WorkflowHandle[Any, Any]
SETTLED = {S.PAID, S.MANUAL_REVIEW, S.REJECTED, S.CANCELLED, S.FAILED}


async def paid_bills(stack: Stack, receipt_id: str) -> list[dict[str, Any]]:
    """Portmone's truth: the receipt's bills that the sandbox holds as paid."""
    resp = await stack.http.get(f"{stack.sandbox_url}/_sandbox/bills", params={"comment": bill_comment(receipt_id)})
    assert resp.status_code == 200, resp.text
    return [b for b in resp.json()["bills"] if b["status"] == "PAYED"]


async def execution(handle: Handle) -> WorkflowExecutionStatus | None:
    return (await handle.describe()).status


async def _any_paid(stack: Stack, receipt_id: str) -> bool:
    return bool(await paid_bills(stack, receipt_id))


def paid_callback(bill: dict[str, Any], receipt_id: str) -> bytes:
    """Portmone's `ok`/PAYED callback for a bill the sandbox made (as Portmone would send it)."""
    sim = SimBill(
        bill_id=bill["bill_id"], payee_id=bill["payee_id"], contract_number=TEST_PHONE,
        amount_kopecks=bill["amount_kopecks"], currency=bill["currency"], comment=bill_comment(receipt_id),
        date=bill["date"],
    )
    return rsp.ok(sim, "PAYED")


# ---- 1: a lost last attempt is outcome_unknown, and retry then needs the confirmation ----------------


async def test_a_bill_lost_on_the_last_attempt_is_outcome_unknown_and_never_paid_twice(
    stack: Stack, env: WorkflowEnvironment
) -> None:
    # Five transient refusals; the sixth (last) attempt creates the bill and the worker dies before it
    # writes the answer down; Portmone pays the bill but its callback is lost.
    await stack.faults({"fail_codes": {"1": {"times": 5}}, "drop_callback": True})
    stack.injected.client.crash_after_send.arm(times=1, skip=5)
    handle = await stack.submit()
    await env.sleep(timedelta(minutes=5))  # the activity's retry back-off, in virtual time
    view = await stack.wait_status(handle, SETTLED)

    assert view.status == S.MANUAL_REVIEW
    assert view.escalation_reason == "outcome_unknown"  # not retries_exhausted: a bill may exist
    assert len(view.open_bills) == 1 and "attempt 6" in view.open_bills[0]
    assert len(await stack.creates()) == 6

    message = await refused(handle, UpdateName.RETRY, OperatorRetry(operator="olena", reason="Portmone is back"))
    assert "confirm that Portmone holds no bill" in message
    # The operator checks the cabinet, as the runbook says: the bill was paid.
    await eventually(lambda: _any_paid(stack, view.receipt_id))  # Portmone settles it a moment later
    [paid] = await paid_bills(stack, view.receipt_id)
    result = await update(handle, UpdateName.MARK_PAID, OperatorMarkPaid(operator="olena", reason="paid per cabinet",
                                                                external_reference=paid["bill_id"]))
    assert result.accepted and (await stack.wait_status(handle, {S.PAID})).status == S.PAID
    assert len(await paid_bills(stack, view.receipt_id)) == 1
    assert len(await stack.creates()) == 6


# ---- 2: an outage of the ledger longer than any deadline delays the payout, never fails it ------------


async def test_a_long_ledger_outage_delays_the_payout_and_never_fails_it(
    stack: Stack, env: WorkflowEnvironment
) -> None:
    outages_before = metrics.in_process().value("payout_ledger_unavailable_total", activity="create_bill")
    stack.injected.ledger.method("attempts.start").arm()  # the bill's attempt cannot be written
    handle = await stack.submit()
    await env.sleep(timedelta(minutes=30))  # longer than every bills.create retry together

    assert await execution(handle) == WorkflowExecutionStatus.RUNNING
    assert (await stack.view(handle)).status == S.BILL_REQUESTED
    assert (await stack.ledger.payouts.get(handle.id)).status == S.RESERVED  # type: ignore[union-attr]
    # Tried again each time the ledger answered, after pauses that double (1, 2, 4, 8 min…): a few times.
    tries = metrics.in_process().value("payout_ledger_unavailable_total", activity="create_bill") - outages_before
    assert 3 <= tries <= 6, tries
    assert await stack.creates() == []  # nothing moved while the ledger could not record it

    stack.injected.ledger.clear()
    await env.sleep(timedelta(hours=1))  # the next try, at most an hour apart
    view = await stack.wait_status(handle, {S.PAID})
    assert view.status == S.PAID and len(await stack.creates()) == 1


# ---- 3: an audit write that cannot happen does not wedge manual review ------------------------------


async def test_a_stuck_audit_write_does_not_wedge_manual_review(stack: Stack, env: WorkflowEnvironment) -> None:
    await stack.faults({"drop_callback": True, "callback_status": "CREATED"})
    handle = await stack.submit()
    await stack.wait_status(handle, {S.AWAITING_CALLBACK})
    await env.sleep(timedelta(seconds=CALLBACK_TIMEOUT + 1))
    view = await stack.wait_status(handle, {S.MANUAL_REVIEW})

    stack.injected.ledger.method("operator_actions.record").arm()
    decision = asyncio.create_task(update(handle, UpdateName.MARK_PAID, OperatorMarkPaid(
        operator="olena", reason="paid by hand", external_reference="PM-1"), "upd-stuck"))
    await env.sleep(timedelta(minutes=15))  # longer than the old 10-minute deadline of the audit write
    assert not decision.done()
    # Meanwhile Portmone pays the bill after all, and its (late) callback arrives.
    resp = await stack.paid_at_portmone(str(view.bill_id))
    assert resp.status_code == 200, resp.text
    stack.injected.ledger.clear()
    await env.sleep(timedelta(minutes=2))
    done = await stack.wait_status(handle, {S.PAID})
    assert done.status == S.PAID
    # The decision never takes effect: the money had moved, and the late callback wins. Either the
    # workflow answers it "not applied", or (when the decision's first workflow task had to be retried
    # after the callback came) its validator refuses it, naming the paid callback.
    outcome = (await asyncio.wait_for(asyncio.gather(decision, return_exceptions=True), 30))[0]
    if isinstance(outcome, WorkflowUpdateFailedError):
        assert isinstance(outcome.cause, ApplicationError) and "paid callback" in outcome.cause.message
    else:
        assert isinstance(outcome, OperatorResult)
        answer = outcome
        assert not answer.accepted and "late ok callback" in answer.message
        again = await update(handle, UpdateName.MARK_PAID, OperatorMarkPaid(
            operator="olena", reason="paid by hand", external_reference="PM-1"), "upd-stuck")
        assert again == answer  # the same update id gets the same answer, at once
    actions = [r.action for r in await operator_rows(stack, handle)]
    assert actions[-1] == "late_callback" and set(actions) <= {"mark_paid", "late_callback"}
    row = await stack.ledger.payouts.get(handle.id)
    assert row is not None and row.reason == "late_ok_callback"


# ---- 4: no new bill while the earlier one may be live ----------------------------------------------


async def test_retry_after_a_callback_timeout_needs_the_confirmation(stack: Stack, env: WorkflowEnvironment) -> None:
    await stack.faults({"drop_callback": True, "callback_status": "CREATED"})
    handle = await stack.submit()
    await stack.wait_status(handle, {S.AWAITING_CALLBACK})
    await env.sleep(timedelta(seconds=CALLBACK_TIMEOUT + 1))
    view = await stack.wait_status(handle, {S.MANUAL_REVIEW})

    assert view.escalation_reason == "callback_timeout"
    assert view.open_bills == [f"round 1 attempt 1: bill {view.bill_id}: created, no final callback"]
    message = await refused(handle, UpdateName.RETRY, OperatorRetry(operator="olena", reason="no word from Portmone"))
    assert "confirm that Portmone holds no bill" in message
    assert len(await stack.creates()) == 1


async def test_a_paid_callback_during_the_back_off_stops_the_next_round(stack: Stack, env: WorkflowEnvironment) -> None:
    await stack.faults({"callback_status": "REJECTED", "callback_error_code": "4"})
    handle = await stack.submit()
    view = await stack.wait_status(handle, {S.RETRY_SCHEDULED})
    # Portmone contradicts itself: the declined bill is reported paid while the payout waits to retry.
    [bill] = await stack.record("bills")
    resp = await stack.post_callback(paid_callback(bill, view.receipt_id))
    assert resp.status_code == 200, resp.text

    done = await stack.wait_status(handle, {S.PAID})
    await env.sleep(timedelta(seconds=BACKOFF + 1))
    assert done.bill_round == 1
    assert len(await stack.creates()) == 1  # no second bill


# ---- 7: a stored callback whose signal was lost is delivered -------------------------------------


async def test_a_callback_stored_while_temporal_was_unreachable_is_redelivered(stack: Stack) -> None:
    # Every delivery attempt of Portmone's callback (the sandbox tries 5 times) finds Temporal unreachable.
    stack.injected.temporal.signals.arm(times=5)
    handle = await stack.submit()
    await eventually(lambda: _portmone_gave_up(stack))

    view = await stack.wait_status(handle, {S.PAID})  # well before the callback timeout: the sweep told it
    assert view.status == S.PAID and stack.injected.temporal.signals.fired >= 1
    [stored] = await stack.ledger.callbacks.for_payout(handle.id)
    assert stored.signalled_at is not None and stored.processed_at is not None


async def test_the_ladder_reads_stored_callbacks_before_escalating(env: WorkflowEnvironment, tmp_path: Path) -> None:
    async with running_stack(env.client, tmp_path, read_timeout=1.0, payout=PayoutSettings(
        callback_timeout_seconds=CALLBACK_TIMEOUT, retry_backoff_seconds=BACKOFF, manual_reminder_seconds=REMINDER,
    )) as stack:
        stack.injected.temporal.signals.arm()  # the webhook never reaches Temporal (nor does its sweep)
        handle = await stack.submit()
        await stack.wait_status(handle, {S.AWAITING_CALLBACK})
        await eventually(lambda: _stored(stack, handle))
        await env.sleep(timedelta(seconds=CALLBACK_TIMEOUT + 1))
        view = await stack.wait_status(handle, {S.PAID})

        assert view.status == S.PAID and view.escalation_reason is None  # no callback_timeout
        assert len(await stack.creates()) == 1


async def _portmone_gave_up(stack: Stack) -> bool:
    """The sandbox's callback went out, and the webhook answered every attempt (stored, not signalled)."""
    records = await stack.record("callbacks")
    return bool(records) and all(a["http_status"] is not None for r in records for a in r["attempts"])


async def _stored(stack: Stack, handle: Handle) -> bool:
    return bool(await stack.ledger.callbacks.for_payout(handle.id))


# ---- 9: a long wait in manual review continues as new ----------------------------------------------


@pytest.fixture
async def short_runs(env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    policy = PayoutSettings(callback_timeout_seconds=CALLBACK_TIMEOUT, retry_backoff_seconds=BACKOFF,
                            manual_reminder_seconds=REMINDER, reminders_per_run=2)
    async with running_stack(env.client, tmp_path, read_timeout=1.0, payout=policy) as stack:
        yield stack


async def test_a_long_manual_review_continues_as_new_with_its_state(
    short_runs: Stack, env: WorkflowEnvironment
) -> None:
    stack = short_runs
    await stack.faults({"drop_callback": True, "callback_status": "CREATED"})
    handle = await stack.submit()
    await stack.wait_status(handle, {S.AWAITING_CALLBACK})
    await env.sleep(timedelta(seconds=CALLBACK_TIMEOUT + 1))
    first = await stack.wait_status(handle, {S.MANUAL_REVIEW})
    first_run = (await handle.describe()).run_id

    for _ in range(2):
        await env.sleep(timedelta(seconds=REMINDER + 1))
    latest = stack.client.get_workflow_handle(handle.id)

    async def new_run() -> bool:
        return (await latest.describe()).run_id != first_run

    await eventually(new_run)
    view = await stack.wait_status(latest, {S.MANUAL_REVIEW})
    assert (view.escalation_reason, view.bill_id, view.open_bills) == (
        first.escalation_reason, first.bill_id, first.open_bills
    )
    assert view.reminders_sent == 2
    assert await execution(latest) == WorkflowExecutionStatus.RUNNING

    # The new run still refuses what the old one refused, and still settles on a late paid callback.
    message = await refused(latest, UpdateName.RETRY, OperatorRetry(operator="olena", reason="?"))
    assert "confirm that Portmone holds no bill" in message
    resp = await stack.paid_at_portmone(str(first.bill_id))
    assert resp.status_code == 200, resp.text
    assert (await stack.wait_status(latest, {S.PAID})).status == S.PAID
    assert len(await stack.creates()) == 1


# ---- 15: a Temporal cancellation is a question for a person, never an abandoned bill -----------------


async def cancelled_in(stack: Stack, handle: Handle) -> Any:
    await handle.cancel()
    view = await stack.wait_status(handle, {S.MANUAL_REVIEW, S.PAID})
    await eventually(lambda: _has_cancel_row(stack, handle))
    return view


async def _has_cancel_row(stack: Stack, handle: Handle) -> bool:
    return "cancellation_requested" in [r.action for r in await operator_rows(stack, handle)]


async def test_a_cancellation_while_the_bill_request_is_in_flight_keeps_the_bill(stack: Stack) -> None:
    await stack.faults({"latency_ms": {"times": 1, "ms": 600}})
    handle = await stack.submit()
    await stack.wait_status(handle, {S.BILL_REQUESTED})
    view = await cancelled_in(stack, handle)

    assert await execution(handle) in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED)
    [bill] = await stack.record("bills")
    if view.status == S.MANUAL_REVIEW:  # the callback had not come yet: a person decides, the bill is known
        assert view.escalation_reason == "cancellation_requested" and view.bill_id == bill["bill_id"]
        assert (await stack.wait_status(handle, {S.PAID})).status == S.PAID  # its paid callback still settles it
    assert len(await stack.creates()) == 1


async def test_a_cancellation_while_awaiting_the_callback_goes_to_manual_review(stack: Stack) -> None:
    await stack.faults({"drop_callback": True, "callback_status": "CREATED"})
    handle = await stack.submit()
    await stack.wait_status(handle, {S.AWAITING_CALLBACK})
    view = await cancelled_in(stack, handle)

    assert view.status == S.MANUAL_REVIEW and view.escalation_reason == "cancellation_requested"
    assert view.cancel_requested and view.open_bills  # the live bill is listed
    assert await execution(handle) == WorkflowExecutionStatus.RUNNING
    message = await refused(handle, UpdateName.CANCEL, OperatorCancel(operator="olena", reason="asked to cancel"))
    assert "confirm that Portmone holds no bill" in message and "before cancelling" in message


async def test_a_cancellation_during_the_back_off_goes_to_manual_review(stack: Stack) -> None:
    await stack.faults({"callback_status": "REJECTED", "callback_error_code": "4"})
    handle = await stack.submit()
    await stack.wait_status(handle, {S.RETRY_SCHEDULED})
    view = await cancelled_in(stack, handle)

    assert view.status == S.MANUAL_REVIEW and view.escalation_reason == "cancellation_requested"
    assert view.open_bills == []  # the declined bill holds no money
    assert len(await stack.creates()) == 1


async def test_a_cancellation_in_manual_review_is_recorded_and_changes_nothing(stack: Stack) -> None:
    await stack.faults({"callback_status": "REJECTED", "callback_error_code": "30"})
    handle = await stack.submit()
    await stack.wait_status(handle, {S.MANUAL_REVIEW})
    view = await cancelled_in(stack, handle)

    assert view.status == S.MANUAL_REVIEW and view.escalation_reason == "permanent_error:30"
    assert view.cancel_requested
    assert await execution(handle) == WorkflowExecutionStatus.RUNNING


async def test_a_cancellation_while_the_ledger_is_down_waits_and_then_asks_a_person(
    stack: Stack, env: WorkflowEnvironment
) -> None:
    stack.injected.ledger.method("payouts.reserve").arm()
    handle = await stack.submit()
    await env.sleep(timedelta(minutes=1))
    await handle.cancel()
    await env.sleep(timedelta(minutes=1))
    assert await execution(handle) == WorkflowExecutionStatus.RUNNING
    stack.injected.ledger.clear()
    await env.sleep(timedelta(minutes=2))
    view = await stack.wait_status(handle, {S.MANUAL_REVIEW})

    assert view.escalation_reason == "cancellation_requested" and view.open_bills == []
    assert await stack.creates() == []
