"""Money safety where people and time step in, one regression per defect of the review that followed
the automatic path (issue: "Money safety where people, recovery tools and the queue step in"). Virtual
time on the Java test server; the real sandbox, webhook, ledger and workers. The Reset cases need the
dev server: tests/integration/test_reset.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.service import RPCStatusCode
from temporalio.testing import WorkflowEnvironment

from payouts import search_attributes as sa
from payouts.models import OperatorCancel, OperatorMarkPaid, OperatorRetry
from payouts.names import UpdateName
from payouts.rejection import RejectionReason
from payouts.status import PayoutStatus as S
from tests.faults import eventually
from tests.stack import Stack
from tests.workflows.conftest import CALLBACK_TIMEOUT
from tests.workflows.test_money_safety import paid_bills
from tests.workflows.test_operator_updates import operator_rows, refused, update

Handle = WorkflowHandle[Any, Any]
OPEN_BILL = {"drop_callback": True, "callback_status": "CREATED"}
# A payout's history may grow with a ledger outage by a bounded number of events, whatever its length
# (before the bound, six hours of outage cost the two payouts here 6,171 and 3,987 events).
OUTAGE_HISTORY_BOUND = 250
OUTAGE_HOURS = 4


async def timed_out_with_an_open_bill(stack: Stack, env: WorkflowEnvironment) -> tuple[Handle, str]:
    await stack.faults(OPEN_BILL)
    handle = await stack.submit()
    view = await stack.wait_status(handle, {S.AWAITING_CALLBACK})
    await env.sleep(timedelta(seconds=CALLBACK_TIMEOUT + 1))
    await stack.wait_status(handle, {S.MANUAL_REVIEW})
    assert view.bill_id
    return handle, view.bill_id


async def skip(env: WorkflowEnvironment, hours: float) -> None:
    """Virtual time passes in steps (activities that ride out an outage run for real meanwhile)."""
    left = timedelta(hours=hours)
    while left > timedelta(0):
        step = min(left, timedelta(minutes=15))
        await env.sleep(step)
        left -= step


# ---- 2: no operator decision while a late paid callback is being applied ----------------------------


async def test_a_decision_is_refused_while_a_late_paid_callback_is_applied(
    stack: Stack, env: WorkflowEnvironment
) -> None:
    handle, bill_id = await timed_out_with_an_open_bill(stack, env)
    await stack.faults({"telecom_fail": {"times": 1, "status": 503}})  # the top-up waits for its retry
    with env.auto_time_skipping_disabled():  # real seconds: the top-up's retry is 5 s away
        resp = await stack.paid_at_portmone(bill_id)
        assert resp.status_code == 200, resp.text
        await eventually(lambda: _telecom_calls(stack, 1))
        # Refused at once, with the reason (an accepted update would wait for the top-up, or be lost).
        cancel = OperatorCancel(operator="olena", reason="giving up")
        message = await asyncio.wait_for(refused(handle, UpdateName.CANCEL, cancel), 20)
        assert "paid" in message and bill_id in message, message
        retry = OperatorRetry(operator="olena", reason="again", confirmed_no_bill_at_portmone=True)
        message = await asyncio.wait_for(refused(handle, UpdateName.RETRY, retry), 20)
        assert "paid" in message, message
    view = await stack.wait_status(handle, {S.PAID})

    assert view.bill_id == bill_id
    assert [row.action for row in await operator_rows(stack, handle)] == ["late_callback"]
    assert len(await paid_bills(stack, handle.id.removeprefix("payout-"))) == 1


async def _telecom_calls(stack: Stack, at_least: int) -> bool:
    return len(await stack.record("telecom")) >= at_least


# ---- 5: a PAID payout names the bill that paid it ------------------------------------------------------


async def test_a_payout_paid_through_an_echo_names_its_bill_in_the_ledger_and_search(stack: Stack) -> None:
    await stack.faults({"commit_then_hang": {"times": 1}})  # the answer is lost; the callback is routed by echo
    handle = await stack.submit()
    view = await stack.wait_status(handle, {S.PAID}, timeout=60)
    [paid] = await paid_bills(stack, handle.id.removeprefix("payout-"))

    row = await stack.ledger.payouts.get(handle.id)
    assert row is not None and row.bill_id == paid["bill_id"]
    assert view.bill_id == paid["bill_id"]
    attrs = (await handle.describe()).typed_search_attributes
    assert attrs.get(sa.PORTMONE_BILL_ID) == paid["bill_id"]


# ---- 6: an outage of hours grows the history by a bounded number of events -----------------------------


async def test_hours_of_ledger_outage_cost_a_bounded_history(stack: Stack, env: WorkflowEnvironment) -> None:
    stack.injected.ledger.method("payouts.reserve").arm()
    first = await stack.submit()
    await skip(env, OUTAGE_HOURS)
    stack.injected.ledger.clear()
    stack.injected.ledger.method("attempts.start").arm()  # the next step's ledger write is down as long
    second = await stack.submit()
    await skip(env, OUTAGE_HOURS)
    stack.injected.ledger.clear()
    await skip(env, 0.25)

    lengths = {}
    for handle in (first, second):
        assert (await stack.wait_status(handle, {S.PAID}, timeout=60)).status == S.PAID
        events = (await handle.fetch_history()).events
        lengths[handle.id] = len(events)
    assert max(lengths.values()) <= OUTAGE_HISTORY_BOUND, f"events after a {OUTAGE_HOURS} h outage: {lengths}"
    assert len(await stack.creates()) == 2


# ---- 7: an ineligible receipt is recorded, and the shopper told ---------------------------------------


async def test_a_receipt_too_old_is_recorded_and_the_shopper_told(stack: Stack) -> None:
    handle = await stack.submit(accepted_at=(datetime.now(UTC) - timedelta(days=45)).isoformat())
    view = await stack.wait_status(handle, {S.REJECTED})

    assert view.rejection_reason == RejectionReason.RECEIPT_TOO_OLD
    row = await stack.ledger.payouts.get(handle.id)
    assert row is not None and row.status == S.REJECTED and row.reason == RejectionReason.RECEIPT_TOO_OLD
    assert "sendMessage" in await stack.telegram_methods("sendMessage")
    texts = [t.get("text", "") for t in await stack.record("telegram")]
    assert any("too old" in text or "застар" in text for text in texts), texts
    assert await stack.creates() == []


# ---- 8: the smaller ones -------------------------------------------------------------------------------


async def test_cancel_is_refused_while_a_bill_of_the_payout_is_paid(stack: Stack) -> None:
    await stack.faults({"telecom_fail": {"times": 1, "status": 400}})  # Portmone pays; the top-up is refused
    handle = await stack.submit()
    view = await stack.wait_status(handle, {S.MANUAL_REVIEW})
    assert view.escalation_reason == "telecom_failed"

    for confirmed in (False, True):
        cancel = OperatorCancel(operator="olena", reason="give up", confirmed_no_bill_at_portmone=confirmed)
        message = await refused(handle, UpdateName.CANCEL, cancel)
        assert "paid" in message, message
    result = await update(handle, UpdateName.MARK_PAID, OperatorMarkPaid(operator="olena", reason="topped up by hand",
                                                                          external_reference="TOPUP-1"))
    assert result.accepted and result.status == S.PAID


async def test_a_bill_adopted_from_an_echo_moves_the_ledger_with_the_workflow(stack: Stack) -> None:
    # The callback reaches us before the answer and is routed by echo; the worker then dies before it
    # records the answer, and the retry adopts the bill the echo attached to the unfinished attempt.
    await stack.faults({"callback_before_answer": {"times": 1}, "callback_status": "CREATED"})
    stack.injected.client.crash_after_send.arm(times=1)
    handle = await stack.submit()
    view = await stack.wait_status(handle, {S.AWAITING_CALLBACK}, timeout=60)

    async def ledger_agrees() -> bool:
        row = await stack.ledger.payouts.get(handle.id)
        return row is not None and row.status == S.AWAITING_CALLBACK

    await eventually(ledger_agrees, timeout=10)
    row = await stack.ledger.payouts.get(handle.id)
    assert row is not None and row.bill_id == view.bill_id
    assert len(await stack.creates()) == 1


async def test_one_refused_signal_does_not_hold_up_the_redelivery_of_the_others(stack: Stack) -> None:
    await stack.faults(OPEN_BILL)
    first, second = await stack.submit(), await stack.submit()
    bills = [(await stack.wait_status(h, {S.AWAITING_CALLBACK})).bill_id for h in (first, second)]
    stack.injected.temporal.signals.arm()  # both paid callbacks come while Temporal cannot be reached
    for bill in bills:
        assert (await stack.paid_at_portmone(str(bill))).status_code == 200

    async def both_stored() -> bool:
        return all([await stack.ledger.callbacks.for_payout(h.id) for h in (first, second)])

    await eventually(both_stored)
    # Temporal is back, and refuses the first payout's signal (its callback comes first in the sweep).
    stack.injected.temporal.refuse[first.id] = RPCStatusCode.RESOURCE_EXHAUSTED
    stack.injected.temporal.signals.disarm()

    assert (await stack.wait_status(second, {S.PAID})).status == S.PAID
    assert (await stack.view(first)).status == S.AWAITING_CALLBACK
    stack.injected.temporal.refuse.clear()
    assert (await stack.wait_status(first, {S.PAID})).status == S.PAID
