from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from ledger import ExchangeEntry, Ledger, LedgerError, PayoutNotFound
from tests.ledger.helpers import reserved


async def _archive(ledger: Ledger, payout_id: str, outcome: str = "ok") -> int:
    return await ledger.archive.record(ExchangeEntry(
        method="bills.create",
        request_redacted={"method": "bills.create", "password": "***", "contractNumber": "+380•••••67"},
        response_body="<rsp status='ok'/>",
        http_status=200,
        outcome=outcome,
        elapsed_ms=42,
        receipt_id="R-1",
        payout_id=payout_id,
        bill_id="B-1",
        telegram_id=7_000_000_001,
    ))


async def test_archive_and_prune(ledger: Ledger) -> None:
    old_clock = datetime(2025, 1, 1, tzinfo=UTC)
    past = Ledger(ledger.engine, clock=lambda: old_clock)
    old_id = await _archive(past, "payout-A", "timeout")
    new_id = await _archive(ledger, "payout-A")
    records = await ledger.archive.for_payout("payout-A")
    assert [r.id for r in records] == [old_id, new_id]
    assert records[0].request_redacted["password"] == "***"
    assert (records[0].created_at, records[0].telegram_id, records[0].outcome) == (
        old_clock,
        7_000_000_001,
        "timeout",
    )
    assert await ledger.archive.prune(older_than=old_clock - timedelta(seconds=1)) == 0
    assert await ledger.archive.prune(older_than=datetime.now(UTC) - timedelta(days=90)) == 1
    assert [r.id for r in await ledger.archive.for_payout("payout-A")] == [new_id]
    with pytest.raises(ValueError, match="timezone"):
        await ledger.archive.prune(older_than=datetime(2025, 1, 1))


async def test_operator_action_is_recorded_once_per_key(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    kwargs = {
        "payout_id": pid,
        "action": "mark_paid",
        "operator": "olena",
        "reason": "paid per Portmone support",
        "reference": "TICKET-7",
        "details": {"bill_id": "B-1", "amount_kopecks": 2500},
        "idempotency_key": "upd-1",
    }
    first = await ledger.operator_actions.record(**kwargs)  # type: ignore[arg-type]
    again = await ledger.operator_actions.record(**kwargs)  # type: ignore[arg-type]
    assert again == first
    assert first.details == {"bill_id": "B-1", "amount_kopecks": 2500}
    await ledger.operator_actions.record(payout_id=pid, action="note", operator="olena", reason="called user")
    await ledger.operator_actions.record(payout_id=pid, action="note", operator="olena", reason="called user")
    assert [a.action for a in await ledger.operator_actions.for_payout(pid)] == ["mark_paid", "note", "note"]
    with pytest.raises(LedgerError, match="idempotency key"):
        await ledger.operator_actions.record(payout_id=pid, action="cancel", operator="x", idempotency_key="upd-1")
    with pytest.raises(PayoutNotFound):
        await ledger.operator_actions.record(payout_id="payout-missing", action="cancel", operator="x")


async def test_concurrent_operator_updates_record_once(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    results = await asyncio.gather(
        *(
            ledger.operator_actions.record(payout_id=pid, action="retry", operator="ivan", idempotency_key="upd-9")
            for _ in range(5)
        )
    )
    assert len({r.id for r in results}) == 1
    assert len(await ledger.operator_actions.for_payout(pid)) == 1
