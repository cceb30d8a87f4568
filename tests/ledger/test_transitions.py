from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from itertools import product

import pytest
import sqlalchemy as sa

from ledger import IllegalTransition, Ledger, PayoutNotFound
from ledger.schema import payouts
from payouts.status import LEGAL_TRANSITIONS, PayoutStatus, is_legal
from tests.ledger.helpers import DAY, reserved

S = PayoutStatus


async def test_legal_path_to_paid_with_history(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    await ledger.payouts.transition(pid, S.BILL_REQUESTED)
    await ledger.payouts.transition(pid, S.AWAITING_CALLBACK)
    paid = (await ledger.payouts.transition(pid, S.PAID, portmone_status="PAYED")).payout
    assert (paid.status, paid.portmone_status, paid.row_version) == (S.PAID, "PAYED", 4)
    history = await ledger.payouts.history(pid)
    assert [(h.from_status, h.to_status) for h in history] == [
        (None, S.RESERVED),
        (S.RESERVED, S.BILL_REQUESTED),
        (S.BILL_REQUESTED, S.AWAITING_CALLBACK),
        (S.AWAITING_CALLBACK, S.PAID),
    ]
    assert all(h.created_at.tzinfo is not None for h in history)
    assert await ledger.payouts.day_totals(DAY) == (1, 2_500)  # PAID keeps its amount


async def test_the_database_records_every_status_change_however_it_was_made(ledger: Ledger) -> None:
    """The history row is the database's (`ledger.history`): a hand-written fix is recorded too, with
    the row's reason and time; staying put, or changing another column, records nothing."""
    pid = await reserved(ledger)
    fixed_at = datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
    async with ledger.engine.begin() as conn:
        by_hand = payouts.update().where(payouts.c.id == pid)
        await conn.execute(by_hand.values(reason="touched", updated_at=fixed_at))  # no status change
        await conn.execute(by_hand.values(status=S.BILL_REQUESTED.value, reason="fixed in psql", updated_at=fixed_at))
    await ledger.payouts.transition(pid, S.BILL_REQUESTED, reason="again")  # staying put
    history = await ledger.payouts.history(pid)
    assert [(h.from_status, h.to_status, h.reason) for h in history] == [
        (None, S.RESERVED, None),
        (S.RESERVED, S.BILL_REQUESTED, "fixed in psql"),
    ]
    assert history[1].created_at == fixed_at


async def test_illegal_transition_is_refused_by_the_api(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    with pytest.raises(IllegalTransition) as info:
        await ledger.payouts.transition(pid, S.PAID)
    assert (info.value.payout_id, info.value.from_status, info.value.to_status) == (pid, S.RESERVED, S.PAID)
    row = await ledger.payouts.get(pid)
    assert row is not None
    assert row.status == S.RESERVED
    assert row.row_version == 1
    assert len(await ledger.payouts.history(pid)) == 1


async def test_terminal_status_is_final(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    await ledger.payouts.transition(pid, S.CANCELLED, reason="operator")
    for to in (S.RESERVED, S.BILL_REQUESTED, S.PAID):
        with pytest.raises(IllegalTransition):
            await ledger.payouts.transition(pid, to)


async def test_same_status_is_a_noop_that_updates_fields(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    await ledger.payouts.transition(pid, S.BILL_REQUESTED)
    await ledger.payouts.transition(pid, S.MANUAL_REVIEW, reason="callback_timeout")
    again = (await ledger.payouts.transition(pid, S.MANUAL_REVIEW, error_code="14", error_description="timeout")).payout
    assert (again.status, again.reason, again.error_code, again.error_description) == (
        S.MANUAL_REVIEW,
        "callback_timeout",
        "14",
        "timeout",
    )
    assert again.row_version == 4
    assert len(await ledger.payouts.history(pid)) == 3  # no history row for staying put


async def test_reason_follows_the_current_status(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    await ledger.payouts.transition(pid, S.MANUAL_REVIEW, reason="outcome_unknown")
    assert [p.id for p in await ledger.payouts.find(status=S.MANUAL_REVIEW, reason="outcome_unknown")] == [pid]
    back = (await ledger.payouts.transition(pid, S.BILL_REQUESTED)).payout
    assert back.reason is None
    assert (await ledger.payouts.history(pid))[1].reason == "outcome_unknown"


async def test_unknown_payout(ledger: Ledger) -> None:
    with pytest.raises(PayoutNotFound):
        await ledger.payouts.transition("payout-nope", S.BILL_REQUESTED)
    assert await ledger.payouts.get("payout-nope") is None


async def test_raw_update_is_refused_by_the_database(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    await ledger.payouts.transition(pid, S.BILL_REQUESTED)
    await ledger.payouts.transition(pid, S.PAID)
    with pytest.raises(sa.exc.DBAPIError, match="illegal transition"):
        async with ledger.engine.begin() as conn:
            await conn.execute(sa.text("UPDATE payouts SET status = 'RESERVED' WHERE id = :id"), {"id": pid})
    row = await ledger.payouts.get(pid)
    assert row is not None
    assert row.status == S.PAID
    # a raw update that keeps the status, or changes other columns only, is allowed
    async with ledger.engine.begin() as conn:
        await conn.execute(sa.text("UPDATE payouts SET status = 'PAID', reason = 'fixed' WHERE id = :id"), {"id": pid})


def _raw_row(pid: str, status: PayoutStatus) -> dict[str, object]:
    now = datetime.now(UTC)
    return {
        "id": pid,
        "receipt_id": pid,
        "user_key": "f" * 64,
        "masked_msisdn": "+380•••••67",
        "telegram_id": 1,
        "amount_kopecks": 100,
        "currency": "UAH",
        "status": status.value,
        "owner": "matrix",
        "business_day": DAY,
        "created_at": now,
        "updated_at": now,
        "row_version": 1,
    }


async def test_database_guard_matches_the_transition_table(ledger: Ledger) -> None:
    """Every (from, to) pair: the raw UPDATE succeeds exactly when `is_legal` says so."""
    pairs = list(product(PayoutStatus, PayoutStatus))
    ids = {pair: f"m-{pair[0].value}-{pair[1].value}" for pair in pairs}
    async with ledger.engine.begin() as conn:
        await conn.execute(sa.insert(payouts), [_raw_row(ids[(a, b)], a) for a, b in pairs])
    outcome: dict[tuple[PayoutStatus, PayoutStatus], bool] = {}
    messages: set[bool] = set()
    async with ledger.engine.connect() as conn:
        for a, b in pairs:
            try:
                async with conn.begin():
                    await conn.execute(sa.update(payouts).where(payouts.c.id == ids[(a, b)]).values(status=b.value))
                outcome[(a, b)] = True
            except sa.exc.DBAPIError as exc:
                outcome[(a, b)] = False
                messages.add("illegal transition" in str(exc))
    assert outcome == {(a, b): is_legal(a, b) for a, b in pairs}
    assert messages == {True}  # every refusal came from the guard
    assert sum(outcome.values()) == len(PayoutStatus) + sum(len(v) for v in LEGAL_TRANSITIONS.values())


async def test_concurrent_transitions_serialize(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    results = await asyncio.gather(
        *(ledger.payouts.transition(pid, S.BILL_REQUESTED) for _ in range(5)),
        return_exceptions=True,
    )
    assert not [r for r in results if isinstance(r, BaseException)]
    row = await ledger.payouts.get(pid)
    assert row is not None
    assert row.row_version == 2  # the replays had nothing new to write
    assert [h.to_status for h in await ledger.payouts.history(pid)] == [S.RESERVED, S.BILL_REQUESTED]
