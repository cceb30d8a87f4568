"""The new-bill rule, enforced in the transaction that writes `prepared` (ledger.attempts), on SQLite and
PostgreSQL: no new bill while an earlier attempt of ANY round may hold money, unless an operator
confirmed it holds none; a paid bill blocks for good."""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from ledger import Ledger, NewBillRefused
from payouts.status import PayoutStatus
from tests.ledger.helpers import confirm_no_bill, reserved


async def store(ledger: Ledger, bill_id: str, verdict: str, *, rsp: str = "ok", status: str = "PAYED") -> int:
    stored = await ledger.callbacks.store(
        dedupe_key=hashlib.sha256(f"{bill_id}|{verdict}".encode()).hexdigest(),
        bill_id=bill_id,
        raw_body=f"<rsp status='{rsp}'/>",
        rsp_status=rsp,
        bill_status=status,
        error_code="4" if rsp == "fail" else None,
        error_description=None,
        verdict=verdict,
    )
    return stored.callback.id


async def test_an_attempt_without_an_ending_in_an_earlier_round_blocks_the_next_round(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    first = await ledger.attempts.begin(pid, round_no=1)  # the worker died mid-call: no ending

    with pytest.raises(NewBillRefused) as refused:
        await ledger.attempts.begin(pid, round_no=2)

    assert [(b.attempt_id, b.verdict, b.bill_id) for b in refused.value.open_bills] == [(first.id, "no_ending", None)]
    assert not refused.value.paid
    assert [a.attempt_no for a in await ledger.attempts.for_payout(pid)] == [1]  # nothing was written


async def test_an_unknown_outcome_blocks_until_an_operator_confirms(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    lost = await ledger.attempts.begin(pid, 1)
    await ledger.attempts.finish(lost.id, "unknown", detail="read timeout")
    with pytest.raises(NewBillRefused):
        await ledger.attempts.begin(pid, 2)

    await confirm_no_bill(ledger, pid, [lost.id], "k-1")

    assert await ledger.attempts.open_bills(pid) == []
    second = await ledger.attempts.begin(pid, 2)
    assert second.attempt_no == 2
    assert [a.confirmed_by is not None for a in await ledger.attempts.for_payout(pid)] == [True, False]


async def test_a_bill_without_a_final_callback_is_live_and_blocks(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    first = await ledger.attempts.begin(pid, 1)
    await ledger.attempts.finish(first.id, "answered", bill_id="B-live")
    await store(ledger, "B-live", "pending", status="CREATED")  # a stale CREATED callback settles nothing
    await ledger.payouts.transition(pid, PayoutStatus.RETRY_SCHEDULED)  # the next round is due

    with pytest.raises(NewBillRefused) as refused:
        await ledger.attempts.begin(pid, 2)
    assert [(b.bill_id, b.verdict) for b in refused.value.open_bills] == [("B-live", "live")]

    await store(ledger, "B-live", "declined_transient", rsp="fail", status="REJECTED")
    assert await ledger.attempts.open_bills(pid) == []
    assert (await ledger.attempts.begin(pid, 2)).attempt_no == 2


async def test_a_paid_bill_blocks_even_after_a_confirmation(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    first = await ledger.attempts.begin(pid, 1)
    await ledger.attempts.finish(first.id, "answered", bill_id="B-paid")
    await confirm_no_bill(ledger, pid, [first.id], "k-2")  # an operator thought it unpaid
    await store(ledger, "B-paid", "paid")
    await ledger.payouts.transition(pid, PayoutStatus.RETRY_SCHEDULED)  # the workflow had not heard of the payment

    with pytest.raises(NewBillRefused) as refused:
        await ledger.attempts.begin(pid, 2)
    assert refused.value.paid
    assert [b.verdict for b in refused.value.open_bills] == ["paid"]


async def test_a_reversed_payment_frees_the_payout_for_a_new_bill(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    first = await ledger.attempts.begin(pid, 1)
    await ledger.attempts.finish(first.id, "answered", bill_id="B-back")
    await store(ledger, "B-back", "reversed", status="RETURN")
    await store(ledger, "B-back", "paid")  # the PAYED came after the RETURN: still returned

    assert await ledger.attempts.open_bills(pid) == []


async def test_refused_or_unsent_attempts_do_not_block(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    refused = await ledger.attempts.begin(pid, 1)
    await ledger.attempts.finish(refused.id, "answered", error_code="4", detail="try later")
    unsent = await ledger.attempts.begin(pid, 1)
    await ledger.attempts.finish(unsent.id, "not_sent", detail="connect refused")

    assert (await ledger.attempts.begin(pid, 2)).attempt_no == 3


async def test_two_senders_at_once_write_one_prepared_attempt(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    outcomes = await asyncio.gather(*(ledger.attempts.begin(pid, 1) for _ in range(6)), return_exceptions=True)

    made = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, NewBillRefused)]
    assert len(made) == 1 and len(refused) == 5
    assert [a.state for a in await ledger.attempts.for_payout(pid)] == ["prepared"]


async def test_a_late_answer_after_unknown_keeps_its_bill_and_routes_its_callbacks(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    slow = await ledger.attempts.begin(pid, 1)
    # A retry gave up on the still-running call ...
    await ledger.attempts.finish(slow.id, "unknown", detail="no recorded ending: the worker stopped")
    # ... Portmone's PAYED callback for the bill arrives before anyone knows the bill id ...
    early = await store(ledger, "B-late", "paid")
    assert [c.id for c in await ledger.callbacks.unrouted()] == [early]
    # ... and then the slow call's answer.
    done = await ledger.attempts.finish(slow.id, "answered", bill_id="B-late")

    assert (done.state, done.bill_id) == ("answered", "B-late")
    assert done.detail is not None and "late answer" in done.detail
    routed = await ledger.callbacks.for_payout(pid)
    assert [(c.id, c.signalled_at) for c in routed] == [(early, None)]  # the sweep will tell the workflow
    assert [c.id for c in await ledger.callbacks.undelivered(pid)] == [early]
    assert (await ledger.payouts.by_bill("B-late")) is not None


async def test_routing_by_echo_needs_an_unambiguous_match(ledger: Ledger) -> None:
    pid = await reserved(ledger, receipt_id="R-echo")
    record = await ledger.payouts.get(pid)
    assert record is not None
    lost = await ledger.attempts.begin(pid, 1)
    await ledger.attempts.finish(lost.id, "unknown", detail="read timeout")
    cb = await store(ledger, "B-echo", "paid")
    echo = ledger.callbacks.route_by_echo

    assert await echo(cb, receipt_id="R-echo", amount_kopecks=9_999, user_key=record.user_key) is None
    assert await echo(cb, receipt_id="R-echo", amount_kopecks=2_500, user_key="f" * 64) is None
    assert await echo(cb, receipt_id="R-other", amount_kopecks=2_500, user_key=record.user_key) is None
    assert await ledger.callbacks.unrouted() != []

    routed = await echo(cb, receipt_id="R-echo", amount_kopecks=2_500, user_key=record.user_key)

    assert routed == pid
    assert [a.bill_id for a in await ledger.attempts.for_payout(pid)] == ["B-echo"]
    assert [c.payout_id for c in await ledger.callbacks.for_payout(pid)] == [pid]
    # the attempt now holds a bill that Portmone paid: no new bill, ever
    with pytest.raises(NewBillRefused) as refused:
        await ledger.attempts.begin(pid, 2)
    assert refused.value.paid


async def test_routing_by_echo_skips_an_attempt_confirmed_to_hold_no_bill(ledger: Ledger) -> None:
    """Two attempts without a bill id, the first confirmed by an operator: a paid callback that echoes the
    receipt is routed to the payout, its bill attached to the attempt nobody confirmed."""
    pid = await reserved(ledger, receipt_id="R-two")
    record = await ledger.payouts.get(pid)
    assert record is not None
    first = await ledger.attempts.begin(pid, 1)
    await ledger.attempts.finish(first.id, "unknown", detail="read timeout")
    await confirm_no_bill(ledger, pid, [first.id], "k-3")
    second = await ledger.attempts.begin(pid, 2)
    await ledger.attempts.finish(second.id, "unknown", detail="read timeout")
    cb = await store(ledger, "B-which", "paid")

    echo = ledger.callbacks.route_by_echo
    assert await echo(cb, receipt_id="R-two", amount_kopecks=2_500, user_key=record.user_key) == pid
    assert await ledger.callbacks.unrouted() == []
    attempts = await ledger.attempts.for_payout(pid)
    assert [(a.id, a.bill_id) for a in attempts] == [(first.id, None), (second.id, "B-which")]
    with pytest.raises(NewBillRefused) as refused:  # paid: never another bill
        await ledger.attempts.begin(pid, 3)
    assert refused.value.paid


async def test_redelivery_lists_routed_callbacks_never_signalled(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    attempt = await ledger.attempts.begin(pid, 1)
    await ledger.attempts.finish(attempt.id, "answered", bill_id="B-r")
    await ledger.callbacks.set_bill_id(pid, "B-r")
    told = await store(ledger, "B-r", "pending", status="CREATED")
    untold = await store(ledger, "B-r", "paid")
    await ledger.callbacks.mark_signalled(told)
    now = (await ledger.callbacks.for_payout(pid))[-1].received_at

    waiting = await ledger.callbacks.to_redeliver(stored_before=now.replace(year=now.year + 1))
    assert [c.id for c in waiting] == [untold]
    assert await ledger.callbacks.to_redeliver(stored_before=now.replace(year=now.year - 1)) == []
    await ledger.callbacks.mark_signalled(untold)
    assert await ledger.callbacks.to_redeliver(stored_before=now.replace(year=now.year + 1)) == []
