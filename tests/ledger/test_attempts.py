from __future__ import annotations

import asyncio

import pytest

from ledger import Ledger, LedgerError, PayoutNotFound
from payouts.status import PayoutStatus
from tests.ledger.helpers import reserved


async def test_write_ahead_log_of_bill_attempts(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    first = await ledger.attempts.begin(pid, round_no=1)
    assert (first.attempt_no, first.round_no, first.state, first.finished_at) == (1, 1, "prepared", None)
    done = await ledger.attempts.finish(first.id, "answered", bill_id="B-1")
    assert (done.state, done.bill_id) == ("answered", "B-1")
    assert done.finished_at is not None
    # finishing again the same way is a no-op; a different ending is refused
    again = await ledger.attempts.finish(first.id, "answered", bill_id="B-1")
    assert again == done
    with pytest.raises(LedgerError, match="already finished"):
        await ledger.attempts.finish(first.id, "unknown")

    # B-1 was declined (a stored callback says so): the next round may send a new bill
    await ledger.callbacks.store(
        dedupe_key="declined-B-1", bill_id="B-1", raw_body="<rsp status='fail'/>", rsp_status="fail",
        bill_status="REJECTED", error_code="4", error_description=None, verdict="declined_transient",
    )
    await ledger.payouts.transition(pid, PayoutStatus.RETRY_SCHEDULED)
    second = await ledger.attempts.begin(pid, round_no=2)
    lost = await ledger.attempts.finish(second.id, "not_sent", error_code="connect", detail="no answer")
    third = await ledger.attempts.begin(pid, round_no=2)
    assert (second.attempt_no, third.attempt_no) == (2, 3)
    assert lost.detail == "no answer"
    assert [a.attempt_no for a in await ledger.attempts.for_payout(pid)] == [1, 2, 3]
    assert [(a.attempt_no, a.state) for a in await ledger.attempts.for_payout(pid, round_no=2)] == [
        (2, "not_sent"),
        (3, "prepared"),  # no recorded ending: the worker died mid-call
    ]


async def test_attempt_errors(ledger: Ledger) -> None:
    with pytest.raises(PayoutNotFound):
        await ledger.attempts.begin("payout-missing", 1)
    pid = await reserved(ledger)
    attempt = await ledger.attempts.begin(pid, 1)
    with pytest.raises(ValueError, match="finishes as"):
        await ledger.attempts.finish(attempt.id, "prepared")
    with pytest.raises(LedgerError, match="no bill attempt"):
        await ledger.attempts.finish(attempt.id + 1000, "answered")


async def test_attempts_of_many_payouts_at_once_get_their_own_numbers(ledger: Ledger) -> None:
    pids = [await reserved(ledger) for _ in range(6)]
    made = await asyncio.gather(*(ledger.attempts.begin(pid, 1) for pid in pids))
    assert [(a.payout_id, a.attempt_no) for a in made] == [(pid, 1) for pid in pids]
