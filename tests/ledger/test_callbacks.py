from __future__ import annotations

import asyncio

import pytest

from ledger import Ledger, LedgerError, PayoutNotFound
from payouts.status import PayoutStatus
from tests.ledger.helpers import reserved, store_callback


async def test_callback_before_route_is_kept_and_handed_over(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    early = await store_callback(ledger, "B-10", "<rsp status='ok'><billId>B-10</billId></rsp>")
    assert (early.inserted, early.payout_id, early.callback.routed_at) == (True, None, None)
    assert [c.id for c in await ledger.callbacks.unrouted()] == [early.callback.id]

    handed = await ledger.callbacks.set_bill_id(pid, "B-10")
    assert [(c.id, c.payout_id) for c in handed] == [(early.callback.id, pid)]
    assert handed[0].routed_at is not None
    assert await ledger.callbacks.unrouted() == []
    payout = await ledger.payouts.get(pid)
    assert payout is not None
    assert payout.bill_id == "B-10"

    # a retried set_bill_id (the activity died after the commit) hands it over again, until processed
    assert [c.id for c in await ledger.callbacks.set_bill_id(pid, "B-10")] == [early.callback.id]
    processed = await ledger.callbacks.mark_processed(early.callback.id)
    assert processed.processed_at is not None
    assert (await ledger.callbacks.mark_processed(early.callback.id)).processed_at == processed.processed_at
    assert await ledger.callbacks.set_bill_id(pid, "B-10") == []

    # Portmone retries the same body: stored once, the route is known now
    repeat = await store_callback(ledger, "B-10", "<rsp status='ok'><billId>B-10</billId></rsp>")
    assert (repeat.inserted, repeat.payout_id, repeat.callback.id) == (False, pid, early.callback.id)
    assert len(await ledger.callbacks.for_payout(pid)) == 1


async def test_route_before_callback(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    assert await ledger.callbacks.set_bill_id(pid, "B-20") == []
    stored = await store_callback(ledger, "B-20", "<rsp status='ok'>B-20 paid</rsp>")
    assert (stored.inserted, stored.payout_id, stored.callback.payout_id) == (True, pid, pid)
    assert stored.callback.routed_at is not None
    dup = await store_callback(ledger, "B-20", "<rsp status='ok'>B-20 paid</rsp>")
    assert (dup.inserted, dup.payout_id) == (False, pid)
    other_body = await store_callback(ledger, "B-20", "<rsp status='ok'>B-20 paid, second notice</rsp>")
    assert other_body.inserted
    assert other_body.payout_id == pid
    assert [c.raw_body for c in await ledger.callbacks.for_payout(pid)] == [
        "<rsp status='ok'>B-20 paid</rsp>",
        "<rsp status='ok'>B-20 paid, second notice</rsp>",
    ]


async def test_a_stored_callback_carries_when_its_bill_was_answered(ledger: Ledger) -> None:
    """The callback-latency metric's start, read in the storing transaction: set for the first copy of a
    callback whose bill's answer is recorded, absent for a repeat and for a callback that came first."""
    pid = await reserved(ledger)
    early = await store_callback(ledger, "B-30", "<rsp status='ok'>B-30 early</rsp>")
    attempt = await ledger.attempts.begin(pid, 1)
    answered = await ledger.attempts.finish(attempt.id, "answered", bill_id="B-30")
    await ledger.callbacks.set_bill_id(pid, "B-30")
    stored = await store_callback(ledger, "B-30", "<rsp status='ok'>B-30 paid</rsp>")
    repeat = await store_callback(ledger, "B-30", "<rsp status='ok'>B-30 paid</rsp>")

    assert early.bill_answered_at is None
    assert answered.finished_at is not None
    assert stored.bill_answered_at == answered.finished_at <= stored.callback.received_at
    assert (repeat.inserted, repeat.bill_answered_at) == (False, None)


async def test_unknown_bill_stays_unrouted(ledger: Ledger) -> None:
    stored = await store_callback(ledger, "B-nobody", "<rsp status='ok'>?</rsp>")
    none = await store_callback(ledger, None, "<rsp status='fail'/>")
    assert stored.payout_id is None
    assert none.payout_id is None
    assert [c.id for c in await ledger.callbacks.unrouted()] == [stored.callback.id, none.callback.id]


async def test_concurrent_duplicate_callbacks_store_once(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    await ledger.callbacks.set_bill_id(pid, "B-30")
    results = await asyncio.gather(*(store_callback(ledger, "B-30", "<rsp>same</rsp>") for _ in range(6)))
    assert sum(r.inserted for r in results) == 1
    assert {r.callback.id for r in results} == {results[0].callback.id}
    assert all(r.payout_id == pid for r in results)


async def test_racing_route_and_callback_never_lose_the_callback(ledger: Ledger) -> None:
    for i in range(5):
        pid = await reserved(ledger)
        bill = f"B-race-{i}"
        handed, stored = await asyncio.gather(
            ledger.callbacks.set_bill_id(pid, bill), store_callback(ledger, bill, f"<rsp>{bill}</rsp>")
        )
        # either the store saw the route, or set_bill_id saw the callback (or both)
        assert stored.payout_id == pid or [c.id for c in handed] == [stored.callback.id]
        assert [c.payout_id for c in await ledger.callbacks.for_payout(pid)] == [pid]
    assert await ledger.callbacks.unrouted() == []


async def test_old_round_bill_still_finds_its_payout(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    a1 = await ledger.attempts.begin(pid, 1)
    await ledger.attempts.finish(a1.id, "answered", bill_id="B-old")
    await ledger.callbacks.set_bill_id(pid, "B-old")
    await ledger.callbacks.store(
        dedupe_key="declined-B-old", bill_id="B-old", raw_body="<rsp status='fail'/>", rsp_status="fail",
        bill_status="REJECTED", error_code="4", error_description=None, verdict="declined_transient",
    )
    await ledger.payouts.transition(pid, PayoutStatus.RETRY_SCHEDULED)
    a2 = await ledger.attempts.begin(pid, 2)
    await ledger.attempts.finish(a2.id, "answered", bill_id="B-new")
    await ledger.callbacks.set_bill_id(pid, "B-new")

    payout = await ledger.payouts.get(pid)
    assert payout is not None
    assert payout.bill_id == "B-new"
    old = await ledger.payouts.by_bill("B-old")
    new = await ledger.payouts.by_bill("B-new")
    assert old is not None
    assert new is not None
    assert old.id == new.id == pid
    assert await ledger.payouts.by_bill("B-unknown") is None
    late = await store_callback(ledger, "B-old", "<rsp>late callback for round 1</rsp>")
    assert late.payout_id == pid


async def test_bill_of_another_payout_is_refused(ledger: Ledger) -> None:
    p1 = await reserved(ledger)
    p2 = await reserved(ledger)
    await ledger.callbacks.set_bill_id(p1, "B-40")
    with pytest.raises(LedgerError, match="already belongs"):
        await ledger.callbacks.set_bill_id(p2, "B-40")
    with pytest.raises(PayoutNotFound):
        await ledger.callbacks.set_bill_id("payout-missing", "B-41")
    with pytest.raises(LedgerError, match="no callback"):
        await ledger.callbacks.mark_processed(987654)
