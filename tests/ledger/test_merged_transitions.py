"""The status moves that ride on the attempt log: `ledger.attempts.begin` moves a payout to BILL_REQUESTED
and `ledger.attempts.finish` with a bill id to AWAITING_CALLBACK, each in its own transaction, idempotently."""

from __future__ import annotations

import hashlib

import pytest

from ledger import IllegalTransition, Ledger, NewBillRefused
from payouts.status import PayoutStatus as S
from tests.ledger.helpers import confirm_no_bill, reserved


async def statuses(ledger: Ledger, pid: str) -> list[S]:
    return [h.to_status for h in await ledger.payouts.history(pid)]


async def status(ledger: Ledger, pid: str) -> S:
    row = await ledger.payouts.get(pid)
    assert row is not None
    return row.status


async def declined(ledger: Ledger, bill_id: str) -> None:
    await ledger.callbacks.store(
        dedupe_key=hashlib.sha256(bill_id.encode()).hexdigest(), bill_id=bill_id, raw_body="<rsp status='fail'/>",
        rsp_status="fail", bill_status="REJECTED", error_code="4", error_description=None,
        verdict="declined_transient",
    )  # fmt: skip


async def test_a_first_attempt_requests_the_bill_and_its_answer_awaits_the_callback(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    attempt = await ledger.attempts.begin(pid, 1)
    assert await status(ledger, pid) == S.BILL_REQUESTED
    await ledger.attempts.finish(attempt.id, "answered", bill_id="B-1")
    await ledger.attempts.finish(attempt.id, "answered", bill_id="B-1")  # a retried activity

    assert await statuses(ledger, pid) == [S.RESERVED, S.BILL_REQUESTED, S.AWAITING_CALLBACK]
    row = await ledger.payouts.get(pid)
    assert row is not None and row.row_version == 3


async def test_a_round_after_the_back_off_requests_its_bill(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    first = await ledger.attempts.begin(pid, 1)
    await ledger.attempts.finish(first.id, "answered", bill_id="B-old")
    await declined(ledger, "B-old")
    await ledger.payouts.transition(pid, S.RETRY_SCHEDULED, reason="transient:4")

    second = await ledger.attempts.begin(pid, 2)
    row = await ledger.payouts.get(pid)
    assert row is not None and (second.round_no, row.status, row.reason) == (2, S.BILL_REQUESTED, None)
    assert (await statuses(ledger, pid))[-2:] == [S.RETRY_SCHEDULED, S.BILL_REQUESTED]


async def test_an_attempt_the_rule_refuses_leaves_the_status_alone(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    live = await ledger.attempts.begin(pid, 1)
    await ledger.attempts.finish(live.id, "answered", bill_id="B-live")
    await ledger.payouts.transition(pid, S.RETRY_SCHEDULED)

    with pytest.raises(NewBillRefused):
        await ledger.attempts.begin(pid, 2)
    assert await status(ledger, pid) == S.RETRY_SCHEDULED
    assert len(await ledger.attempts.for_payout(pid)) == 1


@pytest.mark.parametrize("where", [S.AWAITING_CALLBACK, S.MANUAL_REVIEW, S.PAID, S.CANCELLED])
async def test_no_attempt_begins_for_a_payout_that_waits_or_is_settled(ledger: Ledger, where: S) -> None:
    pid = await reserved(ledger)
    first = await ledger.attempts.begin(pid, 1)
    await ledger.attempts.finish(first.id, "not_sent", detail="connect refused")
    path = {
        S.AWAITING_CALLBACK: [S.AWAITING_CALLBACK],
        S.MANUAL_REVIEW: [S.MANUAL_REVIEW],
        S.PAID: [S.PAID],
        S.CANCELLED: [S.MANUAL_REVIEW, S.CANCELLED],
    }[where]
    for to in path:
        await ledger.payouts.transition(pid, to, reason="test")

    with pytest.raises(IllegalTransition):
        await ledger.attempts.begin(pid, 2)
    assert await status(ledger, pid) == where
    assert len(await ledger.attempts.for_payout(pid)) == 1


async def test_an_attempt_within_a_requested_round_keeps_the_status(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    await ledger.payouts.transition(pid, S.BILL_REQUESTED)  # the workflow moved it itself
    unsent = await ledger.attempts.begin(pid, 1)
    await ledger.attempts.finish(unsent.id, "not_sent", detail="connect refused")
    assert await status(ledger, pid) == S.BILL_REQUESTED  # no bill id: still requesting
    again = await ledger.attempts.begin(pid, 1)

    assert again.attempt_no == 2
    assert await statuses(ledger, pid) == [S.RESERVED, S.BILL_REQUESTED]


async def test_an_answer_after_the_payout_moved_on_does_not_move_it_back(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    attempt = await ledger.attempts.begin(pid, 1)
    await ledger.payouts.transition(pid, S.PAID, portmone_status="PAYED")  # the callback beat the answer

    await ledger.attempts.finish(attempt.id, "answered", bill_id="B-fast")
    assert await status(ledger, pid) == S.PAID
    assert await statuses(ledger, pid) == [S.RESERVED, S.BILL_REQUESTED, S.PAID]


async def test_a_late_answer_of_an_older_attempt_leaves_the_current_round_requesting(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    lost = await ledger.attempts.begin(pid, 1)
    await ledger.attempts.finish(lost.id, "unknown", detail="read timeout")
    await ledger.payouts.transition(pid, S.MANUAL_REVIEW, reason="outcome_unknown")
    await confirm_no_bill(ledger, pid, [lost.id], "k-late")
    await ledger.payouts.transition(pid, S.BILL_REQUESTED)
    await ledger.attempts.begin(pid, 2)

    await ledger.attempts.finish(lost.id, "answered", bill_id="B-late")  # round 1's answer, at last
    assert await status(ledger, pid) == S.BILL_REQUESTED
