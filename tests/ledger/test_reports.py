from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ledger import Ledger
from payouts.status import PayoutStatus as S
from tests.ledger.helpers import reserved

T0 = datetime(2026, 3, 10, 8, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> datetime:
        return self.now


async def test_entered_status_at_is_the_last_entry_into_the_current_status(ledger: Ledger) -> None:
    clock = Clock()
    led = Ledger(ledger.engine, clock=clock)
    pid = await reserved(led)
    await led.payouts.transition(pid, S.BILL_REQUESTED)
    clock.now += timedelta(minutes=5)
    await led.payouts.transition(pid, S.MANUAL_REVIEW, reason="outcome_unknown")
    clock.now += timedelta(minutes=5)
    await led.payouts.transition(pid, S.BILL_REQUESTED, reason="operator retry")
    clock.now += timedelta(minutes=5)
    await led.payouts.transition(pid, S.MANUAL_REVIEW, reason="callback_timeout")
    other = await reserved(led)

    entered = await led.reports.entered_status_at([pid, other, "payout-none"])

    assert entered == {pid: T0 + timedelta(minutes=15), other: T0 + timedelta(minutes=15)}
    assert await led.reports.entered_status_at([]) == {}
    assert [p.id for p in await led.reports.payouts_in_status(S.MANUAL_REVIEW)] == [pid]


async def test_queue_summary_counts_a_status_and_finds_its_longest_wait(ledger: Ledger) -> None:
    clock = Clock()
    led = Ledger(ledger.engine, clock=clock)
    before = await led.reports.queue_summary(S.MANUAL_REVIEW)  # the database is shared by the module's tests
    first = await reserved(led)
    await led.payouts.transition(first, S.MANUAL_REVIEW, reason="outcome_unknown")
    clock.now += timedelta(minutes=10)
    await led.payouts.transition(first, S.BILL_REQUESTED, reason="operator retry")
    second = await reserved(led)
    await led.payouts.transition(second, S.MANUAL_REVIEW, reason="callback_timeout")
    clock.now += timedelta(minutes=10)
    await led.payouts.transition(first, S.MANUAL_REVIEW, reason="callback_timeout")  # waits anew from here

    size, oldest = await led.reports.queue_summary(S.MANUAL_REVIEW)

    assert size == before[0] + 2
    # The second one's entry, not the first one's earlier wait (or an older one left by another test).
    expected = T0 + timedelta(minutes=10)
    assert oldest == (min(expected, before[1]) if before[1] else expected)
    assert oldest is not None and oldest.tzinfo is not None


async def test_reconciliation_snapshot_takes_open_and_recent_payouts_before_the_cutoff(ledger: Ledger) -> None:
    clock = Clock()
    led = Ledger(ledger.engine, clock=clock)
    open_id = await reserved(led)  # never closed: always in scope
    await led.payouts.transition(open_id, S.BILL_REQUESTED)
    attempt = await led.attempts.begin(open_id, 1)
    await led.attempts.finish(attempt.id, "answered", bill_id="B-open")
    await led.callbacks.set_bill_id(open_id, "B-open")
    await led.callbacks.store(dedupe_key="k1", bill_id="B-open", raw_body="<rsp/>", rsp_status="ok",
                             bill_status="CREATED", error_code=None, error_description=None,
                             verdict="pending")
    old_closed = await reserved(led)
    await led.payouts.transition(old_closed, S.CANCELLED, reason="operator:x")
    clock.now = T0 + timedelta(days=5)
    recent_closed = await reserved(led)
    await led.payouts.transition(recent_closed, S.CANCELLED, reason="operator:y")
    await led.callbacks.store(dedupe_key="k2", bill_id="B-nobody", raw_body="<rsp/>", rsp_status="ok",
                             bill_status="PAYED", error_code=None, error_description=None,
                             verdict="paid")
    clock.now = T0 + timedelta(days=1)
    await led.callbacks.store(dedupe_key="k0", bill_id="B-long-ago", raw_body="<rsp/>", rsp_status="ok",
                             bill_status="PAYED", error_code=None, error_description=None,
                             verdict="paid")  # before the window
    clock.now = T0 + timedelta(days=9)
    await reserved(led)  # after the cut-off
    await led.callbacks.store(dedupe_key="k3", bill_id="B-late", raw_body="<rsp/>", rsp_status="ok",
                             bill_status="PAYED", error_code=None, error_description=None,
                             verdict="paid")

    cutoff = T0 + timedelta(days=8)
    snap = await led.reports.reconciliation_snapshot(before=cutoff, active_since=cutoff - timedelta(days=4))

    assert sorted(p.id for p in snap.payouts) == sorted([open_id, recent_closed])
    assert [(b.payout_id, b.bill_id) for b in snap.bills] == [(open_id, "B-open")]
    assert sorted(c.bill_id or "" for c in snap.callbacks) == ["B-nobody", "B-open"]
    assert snap.entered_status_at[open_id] == T0
    with pytest.raises(ValueError, match="timezone-aware"):
        await led.reports.reconciliation_snapshot(before=datetime(2026, 1, 1), active_since=cutoff)
