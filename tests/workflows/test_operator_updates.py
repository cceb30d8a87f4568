"""The escalation ladder and the operator updates, in virtual time, through the webhook, the sandbox
and the Temporal client only."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from pydantic import BaseModel
from temporalio.api.sdk.v1 import WorkflowMetadata
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from payouts import escalation
from payouts import search_attributes as sa
from payouts.models import OperatorCancel, OperatorMarkPaid, OperatorResult, OperatorRetry, PayoutView
from payouts.names import UpdateName
from payouts.status import PayoutStatus as S
from tests.stack import OPERATORS_CHAT_ID, TEST_PHONE, Stack
from tests.workflows.conftest import BACKOFF, CALLBACK_TIMEOUT, REMINDER

Handle = WorkflowHandle[Any, Any]
PERMANENT_30 = {"callback_status": "REJECTED", "callback_error_code": "30"}


# ---- helpers ------------------------------------------------------------------------------------


async def update(handle: Handle, name: str, cmd: BaseModel, update_id: str | None = None) -> OperatorResult:
    result: OperatorResult = await handle.execute_update(name, cmd, id=update_id, result_type=OperatorResult)
    return result


async def refused(handle: Handle, name: str, cmd: BaseModel) -> str:
    """The validator's message for an update it refuses."""
    with pytest.raises(WorkflowUpdateFailedError) as info:
        await update(handle, name, cmd)
    cause = info.value.cause
    assert isinstance(cause, ApplicationError)
    return cause.message


async def escalated(stack: Stack, faults: dict[str, Any] | None = None) -> tuple[Handle, PayoutView]:
    """A payout in MANUAL_REVIEW (a permanent Portmone refusal unless other faults are given)."""
    await stack.faults(faults or PERMANENT_30)
    handle = await stack.submit()
    view = await stack.wait_status(handle, {S.MANUAL_REVIEW})
    await stack.faults({"callback_status": "PAYED", "callback_error_code": None})
    return handle, view


async def details(handle: Handle) -> str:
    """The Web UI's "current details" (Markdown), as the UI reads them."""
    meta: WorkflowMetadata = await handle.query("__temporal_workflow_metadata", result_type=WorkflowMetadata)
    return meta.current_details


async def search_attributes(handle: Handle) -> dict[str, object]:
    attrs = (await handle.describe()).typed_search_attributes
    return {key.name: attrs.get(key) for key in sa.ALL}


async def wait_for(predicate: Any, timeout: float = 15) -> None:
    async with asyncio.timeout(timeout):
        while not await predicate():
            await asyncio.sleep(0.1)


async def operator_rows(stack: Stack, handle: Handle) -> list[Any]:
    return await stack.ledger.operator_actions.for_payout(handle.id)


# ---- the ladder ---------------------------------------------------------------------------------


async def test_callback_timeout_skips_the_status_lookup_and_escalates(stack: Stack, env: WorkflowEnvironment) -> None:
    await stack.faults({"drop_callback": True})
    handle = await stack.submit()
    await stack.wait_status(handle, {S.AWAITING_CALLBACK})
    waiting = await details(handle)
    assert "**Status:** AWAITING_CALLBACK" in waiting and "callback expected by" in waiting

    await env.sleep(timedelta(seconds=CALLBACK_TIMEOUT + 1))
    view = await stack.wait_status(handle, {S.MANUAL_REVIEW})

    assert view.escalation_reason == "callback_timeout"
    assert view.last_error is not None and "status look-up skipped" in view.last_error
    assert "payout_timeout" in await stack.analytics("payout_timeout")
    record = await stack.ledger.payouts.get(handle.id)
    assert record is not None and (record.status, record.reason) == (S.MANUAL_REVIEW, "callback_timeout")
    attrs = await search_attributes(handle)
    assert attrs["PayoutStatus"] == "MANUAL_REVIEW" and attrs["EscalationReason"] == "callback_timeout"
    assert attrs["PortmoneBillId"] == view.bill_id and attrs["PayoutAmountKopecks"] == 2500
    text = await details(handle)
    assert "**Escalation reason:** `callback_timeout`" in text
    assert f"**Portmone bill:** {view.bill_id}" in text
    assert "next operator reminder at" in text and "**Operator can do now:**" in text
    assert "Portmone's cabinet" in text  # the reason-specific advice
    assert TEST_PHONE not in text and "+380•••••67" in text


@pytest.mark.parametrize(
    ("faults", "reason", "backoffs"),
    [
        ({"commit_then_hang": {"times": 1}, "drop_callback": True}, "outcome_unknown", 0),
        (PERMANENT_30, "permanent_error:30", 0),
        ({"fail_codes": {"20": 1.0}}, "permanent_error:20", 0),
        ({"callback_status": "REJECTED", "callback_error_code": "4"}, "retries_exhausted", 1),
        ({"telecom_fail": {"times": 1, "status": 400}}, "telecom_failed", 0),
        ({"callback_status": "RETURN"}, "reversed", 0),
    ],
)
async def test_each_escalation_reason_comes_from_the_fixed_set(
    stack: Stack, env: WorkflowEnvironment, faults: dict[str, Any], reason: str, backoffs: int
) -> None:
    await stack.faults(faults)
    handle = await stack.submit()
    for _ in range(backoffs):
        await stack.wait_status(handle, {S.RETRY_SCHEDULED})
        await env.sleep(timedelta(seconds=BACKOFF + 1))
        await stack.wait_status(handle, {S.BILL_REQUESTED, S.AWAITING_CALLBACK, S.MANUAL_REVIEW})
    view = await stack.wait_status(handle, {S.MANUAL_REVIEW, S.PAID})

    assert (view.status, view.escalation_reason) == (S.MANUAL_REVIEW, reason)
    assert escalation.is_known(view.escalation_reason)
    record = await stack.ledger.payouts.get(handle.id)
    assert record is not None and record.reason == reason
    assert (await search_attributes(handle))["EscalationReason"] == reason
    await wait_for(lambda: _told(stack, "затримується"))  # the user hears that a person will look
    assert all(TEST_PHONE not in t.get("text", "") for t in await stack.record("telegram"))


async def _told(stack: Stack, fragment: str) -> bool:
    return any(fragment in t.get("text", "") for t in await stack.record("telegram"))


async def test_reminders_repeat_in_manual_review_and_never_close_it(stack: Stack, env: WorkflowEnvironment) -> None:
    handle, _ = await escalated(stack)

    async def reminders() -> list[dict[str, Any]]:
        return [t for t in await stack.record("telegram") if str(t.get("chat_id")) == OPERATORS_CHAT_ID]

    assert await reminders() == []
    for count in (1, 2, 3):
        await env.sleep(timedelta(seconds=REMINDER + 1))

        async def arrived(count: int = count) -> bool:
            return len(await reminders()) >= count

        await wait_for(arrived)

    view = await stack.view(handle)
    assert view.status == S.MANUAL_REVIEW and view.reminders_sent == 3
    sent = await reminders()
    assert len(sent) == 3
    first = sent[0]["text"]
    assert "MANUAL_REVIEW" in first and handle.id in first and "permanent_error:30" in first
    assert "reminder 1" in first and "reminder 3" in sent[2]["text"]
    assert all(TEST_PHONE not in r["text"] for r in sent)
    described = await handle.describe()
    assert described.status is not None and described.status.name == "RUNNING"
    record = await stack.ledger.payouts.get(handle.id)
    assert record is not None and record.status == S.MANUAL_REVIEW
    assert "reminders sent:** 3" in await details(handle)


async def test_late_ok_callback_completes_a_payout_in_manual_review(stack: Stack, env: WorkflowEnvironment) -> None:
    await stack.faults({"drop_callback": True})
    handle = await stack.submit()
    await stack.wait_status(handle, {S.AWAITING_CALLBACK})
    await env.sleep(timedelta(seconds=CALLBACK_TIMEOUT + 1))
    view = await stack.wait_status(handle, {S.MANUAL_REVIEW})

    late = f"{stack.sandbox_url}/_sandbox/bills/{view.bill_id}/callback"
    resp = await stack.http.post(late, json={"status": "PAYED"})
    assert resp.status_code == 200, resp.text
    done = await stack.wait_status(handle, {S.PAID})

    assert done.bill_id == view.bill_id
    rows = await operator_rows(stack, handle)
    assert [(r.action, r.operator, r.reference) for r in rows] == [("late_callback", "system", view.bill_id)]
    history = await stack.ledger.payouts.history(handle.id)
    assert (history[-1].to_status, history[-1].reason) == (S.PAID, "late_ok_callback")
    assert len(await stack.creates()) == 1 and len(await stack.record("telecom")) == 1


# ---- the updates' effects ----------------------------------------------------------------------------


async def test_retry_creates_a_new_bill_and_pays(stack: Stack) -> None:
    handle, first = await escalated(stack)

    retry = OperatorRetry(operator="olena", reason="payee fixed")
    result = await update(handle, UpdateName.RETRY, retry, "upd-retry-1")
    view = await stack.wait_status(handle, {S.PAID})

    assert (result.accepted, result.status, result.update_id) == (True, S.BILL_REQUESTED, "upd-retry-1")
    assert view.bill_round == 2 and view.bill_id != first.bill_id and view.escalation_reason is None
    assert len(await stack.creates()) == 2
    rows = await operator_rows(stack, handle)
    assert [(r.action, r.operator, r.reason) for r in rows] == [("retry", "olena", "payee fixed")]
    assert rows[0].details is not None and rows[0].details["escalation_reason"] == "permanent_error:30"
    assert rows[0].idempotency_key == f"{handle.id}:update:upd-retry-1"
    attrs = await search_attributes(handle)
    assert attrs["PayoutStatus"] == "PAID" and attrs["EscalationReason"] is None


async def test_mark_paid_needs_a_reference_and_closes_without_a_bill(stack: Stack) -> None:
    handle, _ = await escalated(stack)

    message = await refused(handle, UpdateName.MARK_PAID, OperatorMarkPaid(operator="olena", reason="paid by hand"))
    assert message == "missing: external_reference"
    result = await update(handle, UpdateName.MARK_PAID, OperatorMarkPaid(operator="olena", reason="paid by hand",
                                                                 external_reference="PM-778899"))
    view = await stack.wait_status(handle, {S.PAID})

    assert result.accepted and result.status == S.PAID and view.status == S.PAID
    assert len(await stack.creates()) == 1
    rows = await operator_rows(stack, handle)
    assert [(r.action, r.reference) for r in rows] == [("mark_paid", "PM-778899")]
    record = await stack.ledger.payouts.get(handle.id)
    assert record is not None and record.reason == "operator:PM-778899"
    await wait_for(lambda: _told(stack, "зараховано"))


async def test_cancel_needs_a_reason_and_tells_the_user(stack: Stack) -> None:
    handle, _ = await escalated(stack)

    assert await refused(handle, UpdateName.CANCEL, OperatorCancel(operator="olena")) == "missing: reason"
    result = await update(handle, UpdateName.CANCEL, OperatorCancel(operator="olena", reason="receipt was fraudulent"))
    await stack.wait_status(handle, {S.CANCELLED})

    assert result.accepted and result.status == S.CANCELLED
    assert (await handle.result()).status == S.CANCELLED
    await wait_for(lambda: _told(stack, "скасовано"))
    rows = await operator_rows(stack, handle)
    assert [(r.action, r.reason) for r in rows] == [("cancel", "receipt was fraudulent")]
    record = await stack.ledger.payouts.get(handle.id)
    assert record is not None and record.status == S.CANCELLED
    assert await stack.ledger.payouts.day_totals(record.business_day) == (0, 0)  # the amount goes back to the day


# ---- validators ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "cmd", "message"),
    [
        ("retry", OperatorRetry(reason="why"), "missing: operator"),
        ("retry", OperatorRetry(operator="  ", reason="why"), "missing: operator"),
        ("retry", OperatorRetry(operator="olena"), "missing: reason"),
        ("mark_paid", OperatorMarkPaid(reason="why", external_reference="X"), "missing: operator"),
        ("mark_paid", OperatorMarkPaid(operator="olena", external_reference="X"), "missing: reason"),
        ("mark_paid", OperatorMarkPaid(operator="olena", reason="why"), "missing: external_reference"),
        ("cancel", OperatorCancel(reason="why"), "missing: operator"),
        ("cancel", OperatorCancel(), "missing: operator, reason"),
    ],
)
async def test_validators_refuse_missing_fields(stack: Stack, name: str, cmd: BaseModel, message: str) -> None:
    handle, _ = await escalated(stack)

    assert await refused(handle, name, cmd) == message
    assert await operator_rows(stack, handle) == []
    assert (await stack.view(handle)).status == S.MANUAL_REVIEW


async def test_validators_refuse_a_payout_that_is_not_in_manual_review(stack: Stack) -> None:
    await stack.faults({"drop_callback": True})
    handle = await stack.submit()
    await stack.wait_status(handle, {S.AWAITING_CALLBACK})

    wrong_state = "payout is AWAITING_CALLBACK, not MANUAL_REVIEW: nothing for an operator to do"
    assert await refused(handle, UpdateName.RETRY, OperatorRetry(operator="o", reason="r")) == wrong_state
    mark = OperatorMarkPaid(operator="o", reason="r", external_reference="X")
    assert await refused(handle, UpdateName.MARK_PAID, mark) == wrong_state
    assert await refused(handle, UpdateName.CANCEL, OperatorCancel(operator="o", reason="r")) == wrong_state
    assert await operator_rows(stack, handle) == []
    assert (await stack.view(handle)).status == S.AWAITING_CALLBACK
    assert len(await stack.creates()) == 1


# ---- one effect per decision ---------------------------------------------------------------------


async def test_the_same_update_twice_has_one_effect(stack: Stack) -> None:
    handle, _ = await escalated(stack)
    cmd = OperatorRetry(operator="olena", reason="Portmone fixed the payee")

    together = await asyncio.gather(*(update(handle, UpdateName.RETRY, cmd, "upd-same") for _ in range(2)))
    await stack.wait_status(handle, {S.PAID})
    again = await update(handle, UpdateName.RETRY, cmd, "upd-same")  # after the payout ended: the first answer again

    assert together[0] == together[1] == again
    assert again.accepted and again.update_id == "upd-same"
    assert len(await stack.creates()) == 2  # the escalated bill and ONE retry bill
    rows = await operator_rows(stack, handle)
    assert [r.action for r in rows] == ["retry"]


async def test_two_different_decisions_at_once_apply_only_one(stack: Stack) -> None:
    handle, _ = await escalated(stack)

    outcomes = await asyncio.gather(
        update(handle, UpdateName.RETRY, OperatorRetry(operator="olena", reason="try again"), "upd-a"),
        update(handle, UpdateName.CANCEL, OperatorCancel(operator="ivan", reason="fraud"), "upd-b"),
        return_exceptions=True,
    )
    view = await stack.wait_status(handle, {S.PAID, S.CANCELLED})

    accepted = [o for o in outcomes if isinstance(o, OperatorResult)]
    failed = [o for o in outcomes if isinstance(o, WorkflowUpdateFailedError)]
    assert len(accepted) == 1 and len(failed) == 1
    cause = failed[0].cause
    assert isinstance(cause, ApplicationError)
    assert "another operator decision is being applied" in cause.message or "not MANUAL_REVIEW" in cause.message
    rows = await operator_rows(stack, handle)
    assert len(rows) == 1
    assert view.status == (S.PAID if rows[0].action == "retry" else S.CANCELLED)


async def test_retry_after_outcome_unknown_needs_the_no_bill_confirmation(stack: Stack) -> None:
    # The bill is created, its answer lost, and Portmone leaves it open (no verdict yet).
    handle, view = await escalated(stack, {"commit_then_hang": {"times": 1}, "callback_status": "CREATED"})
    assert view.escalation_reason == "outcome_unknown"
    assert len(view.open_bills) == 1

    message = await refused(handle, UpdateName.RETRY, OperatorRetry(operator="olena", reason="try again"))
    assert "confirm that Portmone holds no bill" in message
    assert await operator_rows(stack, handle) == []
    assert len(await stack.creates()) == 1

    # The operator follows the runbook: finds the open bill in the cabinet, cancels it there, confirms.
    [bill] = await stack.record("bills")
    resp = await stack.http.post(f"{stack.sandbox_url}/_sandbox/bills/{bill['bill_id']}/cancel", json={})
    assert resp.status_code == 200, resp.text
    retry = OperatorRetry(operator="olena", reason="open bill cancelled in cabinet", confirmed_no_bill_at_portmone=True)
    result = await update(handle, UpdateName.RETRY, retry)
    await stack.faults({"callback_status": "PAYED"})
    done = await stack.wait_status(handle, {S.PAID})

    assert result.accepted and done.bill_round == 2
    rows = await operator_rows(stack, handle)
    assert rows[0].details is not None
    assert rows[0].details["confirmed_no_bill_at_portmone"] == "true"
    assert rows[0].details["escalation_reason"] == "outcome_unknown"
    assert len(await stack.creates()) == 2
    attempts = await stack.ledger.attempts.for_payout(handle.id)
    assert attempts[0].confirmed_by == rows[0].id  # the confirmation is what let the second bill through
    assert [b["status"] for b in await stack.record("bills")] == ["REJECTED", "PAYED"]


async def test_retry_after_telecom_failure_repeats_only_the_topup(stack: Stack) -> None:
    handle, view = await escalated(stack, {"telecom_fail": {"times": 1, "status": 400}})
    assert view.escalation_reason == "telecom_failed"

    result = await update(handle, UpdateName.RETRY, OperatorRetry(operator="olena", reason="telecom API is back"))
    done = await stack.wait_status(handle, {S.PAID})

    assert result.accepted and result.status == S.PAID and "no new bill" in result.message
    assert done.bill_round == 1 and len(await stack.creates()) == 1
    telecom = await stack.record("telecom")
    assert [t.get("outcome") for t in telecom][-1] != "fault" and len(telecom) == 2
