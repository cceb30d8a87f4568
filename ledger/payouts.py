"""Payout rows: transitions, look-ups, the day's totals (reserving lives in `ledger.reserve`)."""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger import guard
from ledger.db import Db
from ledger.errors import IllegalTransition, PayoutNotFound
from ledger.outbox import record_event
from ledger.records import PayoutRecord, StatusChangeRecord
from ledger.schema import bill_attempts, daily_totals, payouts, status_history
from payouts.status import COUNTS_AGAINST_LIMITS, PayoutStatus, is_legal


def payout_record(row: sa.Row[Any]) -> PayoutRecord:
    m = row._mapping
    return PayoutRecord(
        id=m["id"],
        receipt_id=m["receipt_id"],
        fiscal_key=m["fiscal_key"],
        user_key=m["user_key"],
        masked_msisdn=m["masked_msisdn"],
        telegram_id=m["telegram_id"],
        language=m["language"],
        telegram_message_id=m["telegram_message_id"],
        amount_kopecks=m["amount_kopecks"],
        currency=m["currency"],
        payee_id=m["payee_id"],
        status=PayoutStatus(m["status"]),
        reason=m["reason"],
        owner=m["owner"],
        business_day=m["business_day"],
        bill_id=m["bill_id"],
        portmone_status=m["portmone_status"],
        error_code=m["error_code"],
        error_description=m["error_description"],
        created_at=m["created_at"],
        updated_at=m["updated_at"],
        row_version=m["row_version"],
    )


def _change_record(row: sa.Row[Any]) -> StatusChangeRecord:
    m = row._mapping
    return StatusChangeRecord(
        id=m["id"],
        payout_id=m["payout_id"],
        from_status=None if m["from_status"] is None else PayoutStatus(m["from_status"]),
        to_status=PayoutStatus(m["to_status"]),
        reason=m["reason"],
        created_at=m["created_at"],
    )


async def fetch_payout(conn: AsyncConnection, payout_id: str, *, lock: bool = False) -> PayoutRecord | None:
    """The row, optionally locked FOR UPDATE (PostgreSQL; SQLite writers already hold the write lock)."""
    query = sa.select(payouts).where(payouts.c.id == payout_id)
    if lock:
        query = query.with_for_update()
    row = (await conn.execute(query)).first()
    return None if row is None else payout_record(row)


async def require_payout(conn: AsyncConnection, payout_id: str, *, lock: bool = False) -> PayoutRecord:
    record = await fetch_payout(conn, payout_id, lock=lock)
    if record is None:
        raise PayoutNotFound(payout_id)
    return record


async def payout_id_for_bill(conn: AsyncConnection, bill_id: str) -> str | None:
    """The payout a bill id belongs to: its current bill, or a bill of an earlier round (attempt log)."""
    current = await conn.scalar(sa.select(payouts.c.id).where(payouts.c.bill_id == bill_id))
    if current is not None:
        return str(current)
    past = await conn.scalar(
        sa.select(bill_attempts.c.payout_id)
        .where(bill_attempts.c.bill_id == bill_id)
        .order_by(bill_attempts.c.id)
        .limit(1)
    )
    return None if past is None else str(past)


async def record_change(db: Db, conn: AsyncConnection, from_status: PayoutStatus | None, row: PayoutRecord) -> None:
    """A status change, recorded where it happened: the history row and, when the new status is worth
    telling, the outbox event (`ledger.outbox`). `row` is the payout as the change left it."""
    await conn.execute(
        sa.insert(status_history).values(
            payout_id=row.id,
            from_status=None if from_status is None else from_status.value,
            to_status=row.status.value,
            reason=row.reason,
            created_at=db.now(),
        )
    )
    await record_event(db, conn, row)


async def change_status(
    db: Db,
    conn: AsyncConnection,
    row: PayoutRecord,
    to: PayoutStatus,
    *,
    reason: str | None = None,
    portmone_status: str | None = None,
    error_code: str | None = None,
    error_description: str | None = None,
) -> PayoutRecord:
    """Move a payout locked by this transaction (`require_payout(lock=True)`) to `to`; returns the row now.

    Refuses what `payouts.status` forbids. Staying put with nothing new writes nothing; staying put
    with new fields updates them without a history row or an event.
    """
    current = row.status
    if not is_legal(current, to):
        raise IllegalTransition(row.id, current, to)
    fields = {"portmone_status": portmone_status, "error_code": error_code, "error_description": error_description}
    if current == to and reason is None and all(v is None for v in fields.values()):
        return row  # a replayed transition with nothing new: no write at all
    values: dict[str, Any] = {"status": to.value, "updated_at": db.now(), "row_version": payouts.c.row_version + 1}
    if current != to or reason is not None:
        # `reason` says why the payout is in its current status; the history keeps earlier ones
        values["reason"] = reason
    values.update({name: value for name, value in fields.items() if value is not None})
    try:
        await conn.execute(sa.update(payouts).where(payouts.c.id == row.id).values(values))
    except sa_exc.IntegrityError as exc:
        if guard.MESSAGE in str(exc.orig):
            raise IllegalTransition(row.id, current, to) from exc
        raise
    changed = await require_payout(conn, row.id)
    if current != to:
        await record_change(db, conn, current, changed)
        if current in COUNTS_AGAINST_LIMITS and to not in COUNTS_AGAINST_LIMITS:
            await _release(conn, row)
    return changed


async def transition(
    db: Db,
    payout_id: str,
    to: PayoutStatus,
    *,
    reason: str | None = None,
    portmone_status: str | None = None,
    error_code: str | None = None,
    error_description: str | None = None,
) -> PayoutRecord:
    async with db.write() as conn:
        row = await require_payout(conn, payout_id, lock=True)
        return await change_status(
            db,
            conn,
            row,
            PayoutStatus(to),
            reason=reason,
            portmone_status=portmone_status,
            error_code=error_code,
            error_description=error_description,
        )


async def _release(conn: AsyncConnection, row: PayoutRecord) -> None:
    """Give a payout's amount back to its day (it will not be paid)."""
    await conn.execute(
        sa.update(daily_totals)
        .where(daily_totals.c.business_day == row.business_day)
        .values(
            reserved_kopecks=daily_totals.c.reserved_kopecks - row.amount_kopecks,
            reserved_count=daily_totals.c.reserved_count - 1,
        )
    )


async def get_payout(db: Db, payout_id: str) -> PayoutRecord | None:
    async with db.read() as conn:
        return await fetch_payout(conn, payout_id)


async def get_by_receipt(db: Db, receipt_id: str) -> PayoutRecord | None:
    async with db.read() as conn:
        row = (await conn.execute(sa.select(payouts).where(payouts.c.receipt_id == receipt_id))).first()
        return None if row is None else payout_record(row)


async def get_by_bill(db: Db, bill_id: str) -> PayoutRecord | None:
    async with db.read() as conn:
        payout_id = await payout_id_for_bill(conn, bill_id)
        return None if payout_id is None else await fetch_payout(conn, payout_id)


async def list_payouts(
    db: Db, *, status: PayoutStatus | None = None, reason: str | None = None, limit: int = 100
) -> list[PayoutRecord]:
    query = sa.select(payouts).order_by(payouts.c.created_at, payouts.c.id).limit(limit)
    if status is not None:
        query = query.where(payouts.c.status == PayoutStatus(status).value)
    if reason is not None:
        query = query.where(payouts.c.reason == reason)
    async with db.read() as conn:
        return [payout_record(row) for row in await conn.execute(query)]


async def history(db: Db, payout_id: str) -> list[StatusChangeRecord]:
    query = sa.select(status_history).where(status_history.c.payout_id == payout_id).order_by(status_history.c.id)
    async with db.read() as conn:
        return [_change_record(row) for row in await conn.execute(query)]


async def day_totals(db: Db, business_day: date) -> tuple[int, int]:
    query = sa.select(daily_totals.c.reserved_count, daily_totals.c.reserved_kopecks).where(
        daily_totals.c.business_day == business_day
    )
    async with db.read() as conn:
        row = (await conn.execute(query)).first()
    return (0, 0) if row is None else (int(row[0]), int(row[1]))
