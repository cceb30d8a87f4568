"""The payout row inside a transaction: read it, lock it, change its status. Every status change of the
ledger goes through `change_status` (a new row: `ledger.reserve`), so the outbox event is written with it
(`ledger.outbox.record_event`), and the transition table and the day's totals are kept (internal). The
history row is the database's own (`ledger.history`)."""

from __future__ import annotations

import functools
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger import guard
from ledger.db import Db
from ledger.errors import IllegalTransition, PayoutNotFound
from ledger.outbox import record_event
from ledger.records import PayoutRecord, to_record
from ledger.schema import bill_routes, daily_totals, payouts
from payouts.status import COUNTS_AGAINST_LIMITS, PayoutStatus, is_legal


async def fetch_payout(conn: AsyncConnection, payout_id: str, *, lock: bool = False) -> PayoutRecord | None:
    """The row, optionally locked FOR UPDATE (PostgreSQL; SQLite writers already hold the write lock)."""
    row = (await conn.execute(_by_id(lock), {"p_id": payout_id})).first()
    return None if row is None else to_record(PayoutRecord, row)


@functools.cache
def _by_id(lock: bool) -> sa.Select[Any]:
    """The payout row by id (`p_id`), built once (the ledger's most frequent statement)."""
    query = sa.select(payouts).where(payouts.c.id == sa.bindparam("p_id", type_=payouts.c.id.type))
    return query.with_for_update() if lock else query


async def require_payout(conn: AsyncConnection, payout_id: str, *, lock: bool = False) -> PayoutRecord:
    record = await fetch_payout(conn, payout_id, lock=lock)
    if record is None:
        raise PayoutNotFound(payout_id)
    return record


async def payout_by_receipt(conn: AsyncConnection, receipt_id: str) -> PayoutRecord | None:
    row = (await conn.execute(sa.select(payouts).where(payouts.c.receipt_id == receipt_id))).first()
    return None if row is None else to_record(PayoutRecord, row)


async def payout_id_for_bill(conn: AsyncConnection, bill_id: str) -> str | None:
    """The payout a bill id belongs to (its route: the current bill or one of an earlier round)."""
    found = await conn.scalar(sa.select(route_of(bill_id)))
    return None if found is None else str(found)


def route_of(bill_id: str | sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """The payout a bill belongs to, as one expression (a statement can route by it): its route row's
    (`bill_routes`, written once by whoever first learnt the bill)."""
    return sa.select(bill_routes.c.payout_id).where(bill_routes.c.bill_id == bill_id).scalar_subquery()


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
    bill_id: str | None = None,
) -> PayoutRecord:
    """Move a payout locked by this transaction (`require_payout(lock=True)`) to `to`; returns the row now.

    Refuses what `payouts.status` forbids. Staying put with nothing new writes nothing; staying put
    with new fields updates them without a history row or an event. `bill_id` names the bill the
    payout is about now (PAID: the bill that paid, which may be an earlier round's).
    """
    current = row.status
    if not is_legal(current, to):
        raise IllegalTransition(row.id, current, to)
    fields = {
        "portmone_status": portmone_status,
        "error_code": error_code,
        "error_description": error_description,
        "bill_id": None if bill_id == row.bill_id else bill_id,
    }
    if current == to and reason is None and all(v is None for v in fields.values()):
        return row  # a replayed transition with nothing new: no write at all
    values: dict[str, Any] = {"status": to.value, "updated_at": db.now()}
    if current != to or reason is not None:
        # `reason` says why the payout is in its current status; the history keeps earlier ones
        values["reason"] = reason
    values.update({name: value for name, value in fields.items() if value is not None})
    try:
        params = {"p_id": row.id, **{f"v_{name}": value for name, value in values.items()}}
        after = (await conn.execute(_status_update(frozenset(values)), params)).one()
    except sa_exc.IntegrityError as exc:
        if guard.MESSAGE in str(exc.orig):
            raise IllegalTransition(row.id, current, to) from exc
        raise
    changed = to_record(PayoutRecord, after)
    if current != to:
        await record_event(db, conn, changed)  # the history row: the database's trigger (`ledger.history`)
        if current in COUNTS_AGAINST_LIMITS and to not in COUNTS_AGAINST_LIMITS:
            await _release(conn, row)
    return changed


@functools.cache
def _status_update(columns: frozenset[str]) -> sa.Update:
    """UPDATE payouts SET <columns> (bound as `v_<column>`), the row's version counted up, RETURNING the row:
    one statement per set of columns, built once."""
    values: dict[str, Any] = {name: sa.bindparam(f"v_{name}", type_=payouts.c[name].type) for name in sorted(columns)}
    values["row_version"] = payouts.c.row_version + 1
    chosen = payouts.c.id == sa.bindparam("p_id", type_=payouts.c.id.type)
    return sa.update(payouts).where(chosen).values(values).returning(*payouts.c)


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
