"""`ledger.callbacks`: Portmone callbacks, stored once per meaning, routed to a payout by bill id (now or
when the route appears, or by what they echo), marked signalled and processed once delivered."""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.db import Db, Operations
from ledger.errors import LedgerError
from ledger.payout_rows import change_status, payout_id_for_bill, require_payout
from ledger.records import CallbackRecord, StoreCallbackResult, to_record
from ledger.schema import bill_attempts, callbacks, payouts
from payouts.status import PayoutStatus

# first key of the two-int PostgreSQL advisory lock that serializes routing per bill id
_ROUTE_LOCK_CLASS = 0x4C47  # "LG"


class Callbacks(Operations):
    async def store(
        self,
        *,
        dedupe_key: str,
        bill_id: str | None,
        raw_body: str,
        rsp_status: str | None,
        bill_status: str | None,
        error_code: str | None,
        error_description: str | None,
        verdict: str | None,
    ) -> StoreCallbackResult:
        """Store a callback once per `dedupe_key` (a repeat returns the stored one), routed when its bill is known."""
        for _ in range(2):
            try:
                async with self._db.write() as conn:
                    return await _store_once(
                        self._db,
                        conn,
                        dedupe_key=dedupe_key,
                        bill_id=bill_id,
                        values={
                            "raw_body": raw_body,
                            "rsp_status": rsp_status,
                            "bill_status": bill_status,
                            "error_code": error_code,
                            "error_description": error_description,
                            "verdict": verdict,
                        },
                    )
            except sa_exc.IntegrityError:
                continue  # the same body was stored concurrently: the next pass returns that row
        raise LedgerError(f"could not store callback {dedupe_key!r}")

    async def set_bill_id(self, payout_id: str, bill_id: str) -> list[CallbackRecord]:
        """Record `bill_id` as the payout's current bill and hand back its undelivered callbacks.

        A payout still at BILL_REQUESTED now awaits that bill's callback (AWAITING_CALLBACK), as its
        workflow does: also when the bill was adopted from an attempt whose answer never came (its id
        learnt from an echo). Callbacks for the bill that arrived before the route are routed here.
        Returned are all of this bill's callbacks routed to the payout and not yet marked processed, so
        a retried call (the activity died after the commit) hands them over again; the workflow dedupes.
        """
        if not bill_id:
            raise ValueError("bill_id is required")
        async with self._db.write() as conn:
            return await route_bill(self._db, conn, payout_id, bill_id)

    async def route_by_echo(
        self, callback_id: int, *, receipt_id: str, amount_kopecks: int | None, user_key: str
    ) -> str | None:
        """Route a callback for a bill id we never learnt (bills.create committed, its answer lost) by what
        the callback echoes: the receipt named in the comment, the amount, and the phone's keyed digest.

        It routes when the receipt's payout has that amount and phone and an attempt with no bill id that
        may have reached Portmone (`prepared` or `unknown`). That attempt then holds the bill id (the route
        for later callbacks): the latest one no operator confirmed to hold no bill, else the latest one
        (its confirmation is then void: the bill id is new evidence). Returns the payout id, or None.
        """
        async with self._db.write() as conn:
            row = (await conn.execute(sa.select(callbacks).where(callbacks.c.id == callback_id))).first()
            if row is None:
                raise LedgerError(f"no callback {callback_id}")
            stored = to_record(CallbackRecord, row)
            if stored.payout_id is not None or not stored.bill_id:
                return stored.payout_id
            await route_lock(self._db, conn, stored.bill_id)
            owner = await payout_id_for_bill(conn, stored.bill_id)
            if owner is None:
                owner = await _echo_owner(conn, stored.bill_id, receipt_id, amount_kopecks, user_key)
            if owner is not None:
                await route_stored_callbacks(self._db, conn, stored.bill_id, owner)
            return owner

    async def mark_signalled(self, callback_id: int) -> None:
        """The payout's workflow was told about this callback (a signal was accepted, or it is closed)."""
        async with self._db.write() as conn:
            await conn.execute(
                sa.update(callbacks)
                .where(callbacks.c.id == callback_id, callbacks.c.signalled_at.is_(None))
                .values(signalled_at=self._db.now())
            )

    async def mark_processed(self, callback_id: int) -> CallbackRecord:
        """A transition has taken this callback into account."""
        async with self._db.write() as conn:
            return await mark_processed(self._db, conn, callback_id)

    async def to_redeliver(self, *, stored_before: datetime, limit: int = 100) -> list[CallbackRecord]:
        """Routed callbacks whose workflow was never told (Temporal was down, or the route appeared later),
        oldest first; only those stored before `stored_before`, so the live path gets its chance first."""
        query = (
            sa.select(callbacks)
            .where(
                callbacks.c.payout_id.is_not(None),
                callbacks.c.signalled_at.is_(None),
                callbacks.c.processed_at.is_(None),
                callbacks.c.received_at < stored_before,
            )
            .order_by(callbacks.c.id)
            .limit(limit)
        )
        return await self._read(query)

    async def undelivered(self, payout_id: str) -> list[CallbackRecord]:
        """The payout's routed callbacks that no transition has processed yet (the ladder reads them
        before escalating; the workflow dedupes what it already has)."""
        query = (
            sa.select(callbacks)
            .where(callbacks.c.payout_id == payout_id, callbacks.c.processed_at.is_(None))
            .order_by(callbacks.c.id)
        )
        return await self._read(query)

    async def unrouted(self, *, limit: int = 1000) -> list[CallbackRecord]:
        """Callbacks for bills no payout is known to own."""
        query = sa.select(callbacks).where(callbacks.c.payout_id.is_(None)).order_by(callbacks.c.id).limit(limit)
        return await self._read(query)

    async def for_payout(self, payout_id: str) -> list[CallbackRecord]:
        query = sa.select(callbacks).where(callbacks.c.payout_id == payout_id).order_by(callbacks.c.id)
        return await self._read(query)

    async def _read(self, query: sa.Select[Any]) -> list[CallbackRecord]:
        async with self._db.read() as conn:
            return [to_record(CallbackRecord, row) for row in await conn.execute(query)]


async def route_bill(db: Db, conn: AsyncConnection, payout_id: str, bill_id: str) -> list[CallbackRecord]:
    """`Callbacks.set_bill_id` inside a transaction (the attempt log records an answer's bill with it)."""
    await route_lock(db, conn, bill_id)
    payout = await require_payout(conn, payout_id, lock=True)
    owner = await payout_id_for_bill(conn, bill_id)
    if owner is not None and owner != payout_id:
        raise LedgerError(f"bill {bill_id!r} already belongs to payout {owner!r}")
    if payout.bill_id != bill_id:
        await conn.execute(
            sa.update(payouts)
            .where(payouts.c.id == payout_id)
            .values(bill_id=bill_id, updated_at=db.now(), row_version=payouts.c.row_version + 1)
        )
    if payout.status == PayoutStatus.BILL_REQUESTED:
        now_row = await require_payout(conn, payout_id)
        await change_status(db, conn, now_row, PayoutStatus.AWAITING_CALLBACK)
    await route_stored_callbacks(db, conn, bill_id, payout_id)
    rows = await conn.execute(
        sa.select(callbacks)
        .where(callbacks.c.bill_id == bill_id, callbacks.c.payout_id == payout_id, callbacks.c.processed_at.is_(None))
        .order_by(callbacks.c.id)
    )
    return [to_record(CallbackRecord, row) for row in rows]


async def mark_processed(db: Db, conn: AsyncConnection, callback_id: int) -> CallbackRecord:
    """`Callbacks.mark_processed` inside a transaction (a status change takes its deciding callback with it)."""
    marked = sa.update(callbacks).where(callbacks.c.id == callback_id, callbacks.c.processed_at.is_(None))
    row = (await conn.execute(marked.values(processed_at=db.now()).returning(*callbacks.c))).first()
    if row is None:  # marked before (a repeated move), or no such callback
        row = (await conn.execute(sa.select(callbacks).where(callbacks.c.id == callback_id))).first()
    if row is None:
        raise LedgerError(f"no callback {callback_id}")
    return to_record(CallbackRecord, row)


async def route_lock(db: Db, conn: AsyncConnection, bill_id: str) -> None:
    """Serialize "store a callback for bill B" with "record the route to bill B".

    Under READ COMMITTED the two could otherwise miss each other (the callback finds no route, the
    route finds no callback). SQLite writers are serialized by BEGIN IMMEDIATE already.
    """
    if db.is_postgres:
        key = int.from_bytes(hashlib.sha256(bill_id.encode()).digest()[:4], "big", signed=True)
        await conn.execute(sa.select(sa.func.pg_advisory_xact_lock(_ROUTE_LOCK_CLASS, key)))


async def route_stored_callbacks(db: Db, conn: AsyncConnection, bill_id: str, payout_id: str) -> None:
    """Callbacks for `bill_id` stored before its route was known now belong to `payout_id`. Call it
    under `route_lock`. They are not signalled yet, so the redelivery sweep tells the workflow."""
    await conn.execute(
        sa.update(callbacks)
        .where(callbacks.c.bill_id == bill_id, callbacks.c.payout_id.is_(None))
        .values(payout_id=payout_id, routed_at=db.now())
    )


async def _by_dedupe_key(conn: AsyncConnection, dedupe_key: str) -> CallbackRecord | None:
    row = (await conn.execute(sa.select(callbacks).where(callbacks.c.dedupe_key == dedupe_key))).first()
    return None if row is None else to_record(CallbackRecord, row)


async def _store_once(
    db: Db, conn: AsyncConnection, *, dedupe_key: str, bill_id: str | None, values: dict[str, Any]
) -> StoreCallbackResult:
    if bill_id:
        await route_lock(db, conn, bill_id)
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
    answered_at = None
    if payout_id is not None:
        answered_at = await conn.scalar(
            sa.select(bill_attempts.c.finished_at)
            .where(bill_attempts.c.bill_id == bill_id, bill_attempts.c.state == "answered")
            .limit(1)
        )
    return StoreCallbackResult(callback=stored, inserted=True, payout_id=payout_id, bill_answered_at=answered_at)


async def _echo_owner(
    conn: AsyncConnection, bill_id: str, receipt_id: str, amount_kopecks: int | None, user_key: str
) -> str | None:
    query = sa.select(payouts).where(payouts.c.receipt_id == receipt_id).with_for_update()
    payout = (await conn.execute(query)).first()
    if payout is None:
        return None
    m = payout._mapping
    if m["amount_kopecks"] != amount_kopecks or not hmac.compare_digest(str(m["user_key"]), user_key):
        return None
    candidates = (
        await conn.execute(
            sa.select(bill_attempts.c.id, bill_attempts.c.confirmed_by)
            .where(
                bill_attempts.c.payout_id == m["id"],
                bill_attempts.c.bill_id.is_(None),
                bill_attempts.c.state.in_(("prepared", "unknown")),
            )
            .order_by(bill_attempts.c.id.desc())
        )
    ).all()
    if not candidates:
        return None
    chosen = next((row.id for row in candidates if row.confirmed_by is None), candidates[0].id)
    await conn.execute(
        sa.update(bill_attempts)
        .where(bill_attempts.c.id == chosen)
        .values(
            bill_id=bill_id,
            detail=sa.func.coalesce(bill_attempts.c.detail, "")
            + "; bill id learnt from Portmone's callback (receipt, amount and phone echoed)",
        )
    )
    return str(m["id"])
