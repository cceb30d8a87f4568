"""A confirmation names the evidence it answered, and new evidence voids it (issue: "Money safety where
people, recovery tools and the queue step in", defect 3). An operator's "Portmone holds no bill that can
still be paid" covers an attempt only while the ledger knows no more of it than the operator was shown:
a late answer, a bill id learnt from an echo, a callback stored for its bill each put the attempt back
among the bills that stop a new one. On SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from ledger import IllegalTransition, Ledger, NewBillRefused
from payouts.status import PayoutStatus as S
from tests.ledger.helpers import confirm_no_bill, reserved
from tests.ledger.test_new_bill_rule import store


async def lost_then_confirmed(ledger: Ledger, receipt_id: str) -> tuple[str, int]:
    """A payout whose first bills.create may have reached Portmone unanswered; an operator looked in the
    cabinet, found nothing, and confirmed it."""
    pid = await reserved(ledger, receipt_id=receipt_id)
    lost = await ledger.attempts.begin(pid, 1)
    await ledger.attempts.finish(lost.id, "unknown", detail="read timeout")
    await ledger.payouts.transition(pid, S.MANUAL_REVIEW, reason="outcome_unknown")
    await confirm_no_bill(ledger, pid, [lost.id], f"k-{receipt_id}")
    assert await ledger.attempts.open_bills(pid) == []
    return pid, lost.id


async def test_a_bill_id_learnt_from_an_echo_voids_the_confirmation(ledger: Ledger) -> None:
    pid, lost = await lost_then_confirmed(ledger, "R-echo-void")
    record = await ledger.payouts.get(pid)
    assert record is not None
    cb = await store(ledger, "B-late", "pending", status="CREATED")  # Portmone made the bill after all

    routed = await ledger.callbacks.route_by_echo(cb, receipt_id="R-echo-void", amount_kopecks=2_500,
                                                  user_key=record.user_key)  # fmt: skip

    assert routed == pid
    [listed] = await ledger.attempts.open_bills(pid)
    assert (listed.attempt_id, listed.bill_id, listed.verdict, listed.voided) == (lost, "B-late", "unknown", True)
    assert "voided by later evidence" in listed.describe()
    await ledger.payouts.transition(pid, S.BILL_REQUESTED)  # the operator's retry
    with pytest.raises(NewBillRefused):
        await ledger.attempts.begin(pid, 2)


async def test_a_late_answer_voids_the_confirmation(ledger: Ledger) -> None:
    pid, lost = await lost_then_confirmed(ledger, "R-late-void")

    await ledger.attempts.finish(lost, "answered", bill_id="B-answer")

    [listed] = await ledger.attempts.open_bills(pid)
    assert (listed.attempt_id, listed.bill_id, listed.voided) == (lost, "B-answer", True)
    await ledger.payouts.transition(pid, S.BILL_REQUESTED)
    with pytest.raises(NewBillRefused):
        await ledger.attempts.begin(pid, 2)


async def test_a_late_answer_between_the_retry_and_the_new_round_is_refused_as_evidence(ledger: Ledger) -> None:
    """The late answer lands after the operator's retry moved the payout to BILL_REQUESTED and before the
    new round's attempt: the payout stays where the retry put it, and the new round is refused by the
    new-bill rule (the bill may be live), not by a status conflict that would be retried as an error."""
    pid, lost = await lost_then_confirmed(ledger, "R-between")
    await ledger.payouts.transition(pid, S.BILL_REQUESTED)

    await ledger.attempts.finish(lost, "answered", bill_id="B-between")

    row = await ledger.payouts.get(pid)
    assert row is not None and row.status == S.BILL_REQUESTED
    with pytest.raises(NewBillRefused) as refused:
        await ledger.attempts.begin(pid, 2)
    assert [b.bill_id for b in refused.value.open_bills] == ["B-between"]


async def test_a_callback_for_a_confirmed_bill_voids_the_confirmation(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    attempt = await ledger.attempts.begin(pid, 1)
    await ledger.attempts.finish(attempt.id, "answered", bill_id="B-open")
    await ledger.callbacks.set_bill_id(pid, "B-open")
    await ledger.payouts.transition(pid, S.MANUAL_REVIEW, reason="callback_timeout")
    await confirm_no_bill(ledger, pid, [attempt.id], "k-open")
    assert await ledger.attempts.open_bills(pid) == []

    await store(ledger, "B-open", "pending", status="CREATED")  # Portmone still holds the bill open

    [listed] = await ledger.attempts.open_bills(pid)
    assert (listed.bill_id, listed.verdict, listed.voided) == ("B-open", "live", True)


async def test_a_confirmation_of_evidence_that_changed_meanwhile_confirms_nothing(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    lost = await ledger.attempts.begin(pid, 1)
    await ledger.attempts.finish(lost.id, "unknown", detail="read timeout")
    [shown] = await ledger.attempts.open_bills(pid)
    await ledger.attempts.finish(lost.id, "answered", bill_id="B-meanwhile")  # after the operator looked

    await ledger.operator_actions.record(
        payout_id=pid, action="retry", operator="olena", reason="nothing in the cabinet", idempotency_key="k-stale",
        confirms=[(lost.id, shown.evidence)],
    )  # fmt: skip

    [listed] = await ledger.attempts.open_bills(pid)
    assert listed.bill_id == "B-meanwhile" and not listed.voided  # never confirmed: still blocks
    assert [a.confirmed_by for a in await ledger.attempts.for_payout(pid)] == [None]


async def test_a_late_answer_never_moves_the_payout(ledger: Ledger) -> None:
    pid, lost = await lost_then_confirmed(ledger, "R-still")
    await ledger.payouts.transition(pid, S.BILL_REQUESTED)
    current = await ledger.attempts.begin(pid, 2)

    await ledger.attempts.finish(lost, "answered", bill_id="B-old")

    row = await ledger.payouts.get(pid)
    assert row is not None and row.status == S.BILL_REQUESTED  # waiting for round 2's own answer
    await ledger.attempts.finish(current.id, "answered", bill_id="B-new")
    row = await ledger.payouts.get(pid)
    assert row is not None and row.status == S.AWAITING_CALLBACK
    with pytest.raises(IllegalTransition):
        await ledger.attempts.begin(pid, 3)
