"""The stack on the real Temporal dev server, driven only through HTTP and the Temporal client."""

from __future__ import annotations

import asyncio

from temporalio.testing import WorkflowEnvironment

from payouts.models import payout_workflow_id
from payouts.status import PayoutStatus as S
from tests.stack import Stack

SETTLED = {S.PAID, S.MANUAL_REVIEW, S.REJECTED, S.CANCELLED, S.FAILED}


async def test_receipt_to_paid_with_one_bill_user_told_and_telecom_called(stack: Stack) -> None:
    handle = await stack.submit()
    view = await stack.wait_status(handle, SETTLED)

    assert view.status == S.PAID
    assert len(await stack.creates()) == 1
    record = await stack.ledger.payouts.get(handle.id)
    assert record is not None and record.status == S.PAID and record.portmone_status == "PAYED"
    telegram = await stack.telegram_methods("sendMessage", "editMessageText")  # the relay tells the user
    assert telegram[0] == "sendMessage"
    assert telegram[-1] == "editMessageText"
    telecom = await stack.record("telecom")
    assert len(telecom) == 1
    # Listed by the search attribute, as the Web UI lists it.
    found = [w.id async for w in stack.client.list_workflows(f'PayoutStatus="PAID" AND ReceiptId="{view.receipt_id}"')]
    for _ in range(50):
        if found:
            break
        await asyncio.sleep(0.2)
        found = [
            w.id async for w in stack.client.list_workflows(f'PayoutStatus="PAID" AND ReceiptId="{view.receipt_id}"')
        ]
    assert found == [handle.id]


async def test_fail_callback_is_recorded_and_the_user_told(stack: Stack) -> None:
    await stack.faults({"callback_status": "REJECTED", "callback_error_code": "30"})
    handle = await stack.submit()
    view = await stack.wait_status(handle, SETTLED)

    assert view.status == S.MANUAL_REVIEW
    record = await stack.ledger.payouts.get(handle.id)
    assert record is not None
    assert (record.error_code, record.portmone_status) == ("30", "REJECTED")
    await stack.telegram_methods("sendMessage", "editMessageText")  # the relay tells the user
    texts = [t.get("text", "") for t in await stack.record("telegram")]
    assert any("затримується" in text for text in texts)


async def test_five_concurrent_posts_of_one_receipt_make_one_workflow_and_one_bill(stack: Stack) -> None:
    body = stack.receipt()
    answers = await asyncio.gather(*(stack.post_receipt(body) for _ in range(5)))
    assert [a.status_code for a in answers] == [202] * 5
    assert {a.json()["workflow_id"] for a in answers} == {payout_workflow_id(body["receipt_id"])}
    assert sum(a.json()["new"] for a in answers) == 1

    handle = stack.client.get_workflow_handle(payout_workflow_id(body["receipt_id"]))
    assert (await stack.wait_status(handle, SETTLED)).status == S.PAID
    assert len(await stack.creates()) == 1
    again = await stack.post_receipt(body)  # after the payout ended
    assert again.status_code == 202 and again.json()["new"] is False
    assert len(await stack.creates()) == 1


async def test_same_callback_three_times_is_one_transition(stack: Stack) -> None:
    await stack.faults({"drop_callback": True})
    handle = await stack.submit()
    view = await stack.wait_status(handle, {S.AWAITING_CALLBACK})
    await stack.faults({"drop_callback": False})
    for _ in range(3):
        resp = await stack.http.post(
            f"{stack.sandbox_url}/_sandbox/bills/{view.bill_id}/callback", json={"status": "PAYED"}
        )
        assert resp.status_code == 200, resp.text
    view = await stack.wait_status(handle, SETTLED)

    assert view.status == S.PAID
    assert view.callbacks_seen == 1
    history = [h.to_status for h in await stack.ledger.payouts.history(handle.id)]
    assert history.count(S.PAID) == 1
    assert len(await stack.ledger.callbacks.for_payout(handle.id)) == 1


async def test_callback_before_the_create_answer_still_pays_once(stack: Stack) -> None:
    await stack.faults({"callback_before_answer": True})
    handle = await stack.submit()
    view = await stack.wait_status(handle, SETTLED)

    assert view.status == S.PAID
    assert len(await stack.creates()) == 1
    assert len(await stack.record("bills")) == 1


async def test_commit_then_hang_escalates_without_a_second_bill(stack: Stack) -> None:
    # The callback is lost too (a paid one would settle the payout by its echo).
    await stack.faults({"commit_then_hang": {"probability": 1.0, "times": 1}, "drop_callback": True})
    handle = await stack.submit()
    view = await stack.wait_status(handle, SETTLED)

    assert view.status == S.MANUAL_REVIEW
    assert view.escalation_reason == "outcome_unknown"
    assert len(await stack.record("bills")) == 1
    assert len(await stack.creates()) == 1
    exchanges = await stack.ledger.archive.for_payout(handle.id)
    assert [e.outcome for e in exchanges] == ["outcome_unknown"]


async def test_unknown_bill_callback_is_stored_with_202(stack: Stack, dev_env: WorkflowEnvironment) -> None:
    body = (
        b'<?xml version="1.0" encoding="utf-8"?><rsp status="ok"><bill><billId>NO-SUCH-BILL</billId>'
        b"<status>PAYED</status></bill></rsp>"
    )
    resp = await stack.post_callback(body)
    assert resp.status_code == 202
    unrouted = await stack.ledger.callbacks.unrouted()
    assert [c.bill_id for c in unrouted] == ["NO-SUCH-BILL"]
