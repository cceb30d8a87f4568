"""Portmone callbacks: stored once per body, routed to a payout by bill id (now or when the route
appears), marked processed once delivered."""

from __future__ import annotations

import hashlib
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.db import Db
from ledger.errors import LedgerError
from ledger.payouts import payout_id_for_bill, require_payout
from ledger.records import CallbackRecord, StoreCallbackResult
from ledger.schema import callbacks, payouts

# first key of the two-int PostgreSQL advisory lock that serializes routing per bill id
_ROUTE_LOCK_CLASS = 0x4C47  # "LG"


def callback_record(row: sa.Row[Any]) -> CallbackRecord:
    m = row._mapping
    return CallbackRecord(
        id=m["id"],
        dedupe_key=m["dedupe_key"],
        bill_id=m["bill_id"],
        payout_id=m["payout_id"],
        raw_body=m["raw_body"],
        rsp_status=m["rsp_status"],
        bill_status=m["bill_status"],
        error_code=m["error_code"],
        error_description=m["error_description"],
        received_at=m["received_at"],
        routed_at=m["routed_at"],
        processed_at=m["processed_at"],
    )


async def _route_lock(db: Db, conn: AsyncConnection, bill_id: str) -> None:
    """Serialize "store a callback for bill B" with "record the route to bill B".

    Under READ COMMITTED the two could otherwise miss each other (the callback finds no route, the
    route finds no callback). SQLite writers are serialized by BEGIN IMMEDIATE already.
    """
    if db.is_postgres:
        key = int.from_bytes(hashlib.sha256(bill_id.encode()).digest()[:4], "big", signed=True)
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_ROUTE_LOCK_CLASS, key)))


async def _by_dedupe_key(conn: AsyncConnection, dedupe_key: str) -> CallbackRecord | None:
    row = (await conn.execute(sa.select(callbacks).where(callbacks.c.dedupe_key == dedupe_key))).first()
    return None if row is None else callback_record(row)


async def store_callback(
    db: Db,
    *,
    dedupe_key: str,
    bill_id: str | None,
    raw_body: str,
    rsp_status: str | None,
    bill_status: str | None,
    error_code: str | None,
    error_description: str | None,
) -> StoreCallbackResult:
    for _ in range(2):
        try:
            async with db.write() as conn:
                return await _store_once(
                    db,
                    conn,
                    dedupe_key=dedupe_key,
                    bill_id=bill_id,
                    values={
                        "raw_body": raw_body,
                        "rsp_status": rsp_status,
                        "bill_status": bill_status,
                        "error_code": error_code,
                        "error_description": error_description,
                    },
                )
        except sa_exc.IntegrityError:
            continue  # the same body was stored concurrently: the next pass returns that row
    raise LedgerError(f"could not store callback {dedupe_key!r}")


async def _store_once(
    db: Db, conn: AsyncConnection, *, dedupe_key: str, bill_id: str | None, values: dict[str, Any]
) -> StoreCallbackResult:
    if bill_id:
        await _route_lock(db, conn, bill_id)
    existing = await _by_dedupe_key(conn, dedupe_key)
    payout_id = await payout_id_for_bill(conn, bill_id) if bill_id else None
    now = db.now()
    if existing is not None:
        if existing.payout_id is None and payout_id is not None:
            await conn.execute(
                sa.update(callbacks).where(callbacks.c.id == existing.id).values(payout_id=payout_id, routed_at=now)
            )
            existing = await _by_dedupe_key(conn, dedupe_key)
            assert existing is not None
        return StoreCallbackResult(callback=existing, inserted=False, payout_id=existing.payout_id)
    await conn.execute(
        sa.insert(callbacks).values(
            dedupe_key=dedupe_key,
            bill_id=bill_id,
            payout_id=payout_id,
            received_at=now,
            routed_at=now if payout_id is not None else None,
            **values,
        )
    )
    stored = await _by_dedupe_key(conn, dedupe_key)
    assert stored is not None
    return StoreCallbackResult(callback=stored, inserted=True, payout_id=payout_id)


async def set_bill_id(db: Db, payout_id: str, bill_id: str) -> list[CallbackRecord]:
    """Record `bill_id` as the payout's current bill and hand back its undelivered callbacks.

    Callbacks for the bill that arrived before the route are routed here. Returned are all of this
    bill's callbacks routed to the payout and not yet marked processed, so a retried call (the
    activity died after the commit) hands them over again; the workflow dedupes.
    """
    if not bill_id:
        raise ValueError("bill_id is required")
    async with db.write() as conn:
        await _route_lock(db, conn, bill_id)
        payout = await require_payout(conn, payout_id, lock=True)
        owner = await payout_id_for_bill(conn, bill_id)
        if owner is not None and owner != payout_id:
            raise LedgerError(f"bill {bill_id!r} already belongs to payout {owner!r}")
        now = db.now()
        if payout.bill_id != bill_id:
            await conn.execute(
                sa.update(payouts)
                .where(payouts.c.id == payout_id)
                .values(bill_id=bill_id, updated_at=now, row_version=payouts.c.row_version + 1)
            )
        await conn.execute(
            sa.update(callbacks)
            .where(callbacks.c.bill_id == bill_id, callbacks.c.payout_id.is_(None))
            .values(payout_id=payout_id, routed_at=now)
        )
        rows = await conn.execute(
            sa.select(callbacks)
            .where(
                callbacks.c.bill_id == bill_id,
                callbacks.c.payout_id == payout_id,
                callbacks.c.processed_at.is_(None),
            )
            .order_by(callbacks.c.id)
        )
        return [callback_record(row) for row in rows]


async def mark_callback_processed(db: Db, callback_id: int) -> CallbackRecord:
    query = sa.select(callbacks).where(callbacks.c.id == callback_id)
    async with db.write() as conn:
        await conn.execute(
            sa.update(callbacks)
            .where(callbacks.c.id == callback_id, callbacks.c.processed_at.is_(None))
            .values(processed_at=db.now())
        )
        row = (await conn.execute(query)).first()
        if row is None:
            raise LedgerError(f"no callback {callback_id}")
        return callback_record(row)


async def unrouted_callbacks(db: Db, *, limit: int = 1000) -> list[CallbackRecord]:
    query = sa.select(callbacks).where(callbacks.c.payout_id.is_(None)).order_by(callbacks.c.id).limit(limit)
    async with db.read() as conn:
        return [callback_record(row) for row in await conn.execute(query)]


async def callbacks_for(db: Db, payout_id: str) -> list[CallbackRecord]:
    query = sa.select(callbacks).where(callbacks.c.payout_id == payout_id).order_by(callbacks.c.id)
    async with db.read() as conn:
        return [callback_record(row) for row in await conn.execute(query)]
