"""ReceiptPayoutWorkflow in virtual time, driven through the webhook and the Temporal client."""

from __future__ import annotations

from datetime import timedelta

from temporalio.testing import WorkflowEnvironment

from payouts.status import PayoutStatus as S
from tests.stack import Stack
from tests.workflows.conftest import BACKOFF, CALLBACK_TIMEOUT

SETTLED = {S.PAID, S.MANUAL_REVIEW, S.REJECTED, S.CANCELLED, S.FAILED}


async def test_happy_path_pays_once_and_tells_the_user(stack: Stack) -> None:
    handle = await stack.submit()
    view = await stack.wait_status(handle, SETTLED)

    assert view.status == S.PAID
    creates = await stack.creates()
    assert len(creates) == 1
    assert view.bill_id is not None
    record = await stack.ledger.payouts.get(handle.id)
    assert record is not None and record.status == S.PAID and record.bill_id == view.bill_id
    assert (await handle.result()).status == S.PAID

    methods = await stack.telegram_methods("sendMessage", "editMessageText")
    assert methods[0] == "sendMessage" and "editMessageText" in methods
    telecom = await stack.record("telecom")
    assert len(telecom) == 1
    names = await stack.analytics("payout_initiated", "payout_success")
    assert names.count("payout_initiated") == 1 and names.count("payout_success") == 1


async def test_transient_fail_callback_retries_with_a_new_bill(stack: Stack, env: WorkflowEnvironment) -> None:
    await stack.faults({"callback_status": "REJECTED", "callback_error_code": "4"})
    handle = await stack.submit()
    await stack.wait_status(handle, {S.RETRY_SCHEDULED})
    await stack.faults({"callback_status": "PAYED"})
    await env.sleep(timedelta(seconds=BACKOFF + 1))
    view = await stack.wait_status(handle, SETTLED)

    assert view.status == S.PAID
    assert view.bill_round == 2
    assert len(await stack.creates()) == 2
    history = [h.to_status for h in await stack.ledger.payouts.history(handle.id)]
    assert S.RETRY_SCHEDULED in history and history[-1] == S.PAID


async def test_permanent_fail_callback_goes_to_manual_review(stack: Stack) -> None:
    await stack.faults({"callback_status": "REJECTED", "callback_error_code": "30"})
    handle = await stack.submit()
    view = await stack.wait_status(handle, SETTLED)

    assert view.status == S.MANUAL_REVIEW
    assert view.escalation_reason == "permanent_error:30"
    record = await stack.ledger.payouts.get(handle.id)
    assert record is not None and record.error_code == "30"
    assert len(await stack.creates()) == 1


async def test_no_callback_escalates_after_the_timeout_in_virtual_time(stack: Stack, env: WorkflowEnvironment) -> None:
    await stack.faults({"drop_callback": True})
    handle = await stack.submit()
    await stack.wait_status(handle, {S.AWAITING_CALLBACK})
    await env.sleep(timedelta(seconds=CALLBACK_TIMEOUT + 1))
    view = await stack.wait_status(handle, SETTLED)

    assert view.status == S.MANUAL_REVIEW
    assert view.escalation_reason == "callback_timeout"
    assert "payout_timeout" in await stack.analytics("payout_timeout")


async def test_duplicate_callback_is_one_transition(stack: Stack) -> None:
    await stack.faults({"duplicate_callback": True})
    handle = await stack.submit()
    view = await stack.wait_status(handle, SETTLED)

    assert view.status == S.PAID
    assert view.callbacks_seen == 1
    history = [h.to_status for h in await stack.ledger.payouts.history(handle.id)]
    assert history.count(S.PAID) == 1


async def test_permanent_create_error_never_resends(stack: Stack) -> None:
    await stack.faults({"fail_codes": {"20": 1.0}})
    handle = await stack.submit()
    view = await stack.wait_status(handle, SETTLED)

    assert view.status == S.MANUAL_REVIEW
    assert view.escalation_reason == "permanent_error:20"
    assert len(await stack.creates()) == 1
    assert view.bill_id is None


async def test_outcome_unknown_goes_to_manual_review_without_a_second_create(stack: Stack) -> None:
    await stack.faults({"commit_then_hang": {"probability": 1.0, "times": 1}, "drop_callback": True})
    handle = await stack.submit()
    view = await stack.wait_status(handle, SETTLED)

    assert view.status == S.MANUAL_REVIEW
    assert view.escalation_reason == "outcome_unknown"
    assert len(await stack.creates()) == 1
    assert len(await stack.record("bills")) == 1  # the bill exists at Portmone: that is why nobody re-sends
    attempts = await stack.ledger.attempts.for_payout(handle.id)
    assert [a.state for a in attempts] == ["unknown"]
    assert len(view.open_bills) == 1 and "attempt 1" in view.open_bills[0]  # the evidence an operator sees


async def test_a_paid_callback_for_a_bill_whose_answer_was_lost_settles_the_payout(stack: Stack) -> None:
    """bills.create committed and its answer never came; Portmone's PAYED callback names a bill id we
    never learnt, and is routed by what it echoes (receipt, amount, phone): PAID, no second bill."""
    await stack.faults({"commit_then_hang": {"probability": 1.0, "times": 1}})
    handle = await stack.submit()
    view = await stack.wait_status(handle, {S.PAID})

    bills = await stack.record("bills")
    assert len(await stack.creates()) == 1 and len(bills) == 1
    assert view.bill_id is None or view.bill_id == bills[0]["bill_id"]
    attempts = await stack.ledger.attempts.for_payout(handle.id)
    assert [(a.state, a.bill_id) for a in attempts] == [("unknown", bills[0]["bill_id"])]
    rows = await stack.ledger.operator_actions.for_payout(handle.id)
    assert [(r.action, r.operator, r.reference) for r in rows] == [("late_callback", "system", bills[0]["bill_id"])]
    record = await stack.ledger.payouts.get(handle.id)
    assert record is not None and record.status == S.PAID


async def test_limit_hit_is_rejected_without_a_bill(stack: Stack) -> None:
    handle = await stack.submit(amount_kopecks=stack.settings.ledger.max_payout_kopecks + 1)
    view = await stack.wait_status(handle, SETTLED)

    assert view.status == S.REJECTED
    assert view.rejection_reason == "amount_over_max"
    assert await stack.creates() == []


async def test_duplicate_fiscal_key_is_rejected(stack: Stack) -> None:
    first = await stack.submit(fiscal_key="FK-1")
    assert (await stack.wait_status(first, SETTLED)).status == S.PAID
    second = await stack.submit(fiscal_key="FK-1")
    view = await stack.wait_status(second, SETTLED)

    assert view.status == S.REJECTED
    assert view.rejection_reason == "duplicate_fiscal_key"
    assert len(await stack.creates()) == 1
