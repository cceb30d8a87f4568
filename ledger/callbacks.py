"""`ledger.callbacks`: Portmone callbacks, stored once per meaning, routed to a payout by bill id (now or
when the route appears, or by what they echo), marked signalled and processed once delivered."""

from __future__ import annotations

import functools
import hmac
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.db import Db, Operations
from ledger.errors import LedgerError
from ledger.payout_rows import change_status, require_payout, route_of
from ledger.records import CallbackRecord, PayoutRecord, StoreCallbackResult, to_record
from ledger.schema import UTCDateTime, bill_attempts, bill_routes, callbacks, payouts
from payouts.status import PayoutStatus


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
        """Store a callback once per `dedupe_key` (a repeat returns the stored one), routed when its bill is known.

        One statement, on its own (`Db.statement`: no BEGIN/COMMIT on PostgreSQL). It takes the bill's
        route row first (`route_lock`: an upsert of `bill_routes`, which creates the row without a
        payout when the bill is new) and routes the callback by what that returns; the INSERT does
        nothing on a known `dedupe_key` and returns the stored row with the bill's answered time (the
        latency metric), or the row stored before (PostgreSQL: the same statement; SQLite, and a copy
        that a concurrent request was committing: a second SELECT).

        Why a callback for bill B and the route to B ("record the route" is `set_bill_id`,
        `Attempts.finish`, `route_by_echo`: each takes `route_lock(B)` first, writes the owner,
        then `route_stored_callbacks(B)`, and commits) never miss each other: both take B's row.
        An upsert that finds the row, or a concurrent insert of it, waits for the other transaction
        and then reads the row's latest version, whatever its snapshot. So either the writer took
        the row first, and the callback's statement returns the owner the writer committed; or the
        callback took it first, and the writer's `route_stored_callbacks` (a later statement, a
        new snapshot) sees the committed callback. The row is held for the statement's
        microseconds. SQLite serializes writers (BEGIN IMMEDIATE), so its INSERT reads the route
        directly; only an unrouted repeat looks again there, and on PostgreSQL too (it repairs a
        callback stored before its route row existed, by a webhook of an earlier version).
        """
        stored = await _store_once(
            self._db,
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
        if stored.payout_id is None and bill_id and not stored.inserted:
            stored = await self._route_late(stored, bill_id)
        return stored

    async def _route_late(self, stored: StoreCallbackResult, bill_id: str) -> StoreCallbackResult:
        """The slow path of `store`: a repeat of a callback stored unrouted is routed when its route is
        known now (`route_lock`, then `route_stored_callbacks`)."""
        async with self._db.write() as conn:
            owner = await route_lock(self._db, conn, bill_id)
            if owner is None:
                return stored
            await route_stored_callbacks(self._db, conn, bill_id, owner)
            row = (await conn.execute(sa.select(callbacks).where(callbacks.c.id == stored.callback.id))).one()
            answered_at = await conn.scalar(sa.select(_answered_at(bill_id))) if stored.inserted else None
        callback = to_record(CallbackRecord, row)
        return StoreCallbackResult(
            callback=callback, inserted=stored.inserted, payout_id=callback.payout_id, bill_answered_at=answered_at
        )

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
            owner = await route_lock(self._db, conn, stored.bill_id)
            if owner is None:
                owner = await _echo_owner(conn, stored.bill_id, receipt_id, amount_kopecks, user_key)
                if owner is not None:
                    await route_lock(self._db, conn, stored.bill_id, owner)
            if owner is not None:
                await route_stored_callbacks(self._db, conn, stored.bill_id, owner)
            return owner

    async def mark_signalled(self, *callback_ids: int) -> None:
        """The payouts' workflows were told about these callbacks (a signal was accepted, or the workflow
        is closed): one statement for all of them (the webhook batches, `webhook.marks`)."""
        if not callback_ids:
            return
        ids = sorted(set(callback_ids))
        if self._db.is_postgres:
            # one prepared statement whatever the count (`IN` would render a statement per count)
            chosen = callbacks.c.id == sa.any_(sa.literal(ids, postgresql.ARRAY(sa.BigInteger())))
        else:
            chosen = callbacks.c.id.in_(ids)
        async with self._db.statement() as conn:
            await conn.execute(
                sa.update(callbacks)
                .where(chosen, callbacks.c.signalled_at.is_(None))
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


async def route_bill(
    db: Db, conn: AsyncConnection, payout_id: str, bill_id: str, *, routed: PayoutRecord | None = None
) -> list[CallbackRecord]:
    """`Callbacks.set_bill_id` inside a transaction. `routed`: the payout row as this transaction locked it,
    after it routed the bill to it (`route_lock(bill_id, payout_id)`) and routed the bill's stored
    callbacks (the attempt log records an answer's bill so)."""
    if routed is None:
        await route_lock(db, conn, bill_id)  # the route row first, as every router takes it
    payout = routed or await require_payout(conn, payout_id, lock=True)
    if routed is None:
        await route_lock(db, conn, bill_id, payout_id)
    if payout.status == PayoutStatus.BILL_REQUESTED:  # the bill's callback is awaited now, as the workflow does
        await change_status(db, conn, payout, PayoutStatus.AWAITING_CALLBACK, bill_id=bill_id)
    elif payout.bill_id != bill_id:
        await conn.execute(
            sa.update(payouts)
            .where(payouts.c.id == payout_id)
            .values(bill_id=bill_id, updated_at=db.now(), row_version=payouts.c.row_version + 1)
        )
    if routed is None:
        await route_stored_callbacks(db, conn, bill_id, payout_id)
    rows = await conn.execute(_ROUTING.undelivered, {"c_bill": bill_id, "c_payout": payout_id})
    return [to_record(CallbackRecord, row) for row in rows]


async def mark_processed(db: Db, conn: AsyncConnection, callback_id: int) -> CallbackRecord:
    """`Callbacks.mark_processed` inside a transaction (a status change takes its deciding callback with it)."""
    row = (await conn.execute(_ROUTING.processed, {"c_id": callback_id, "c_now": db.now()})).first()
    if row is None:  # marked before (a repeated move), or no such callback
        row = (await conn.execute(sa.select(callbacks).where(callbacks.c.id == callback_id))).first()
    if row is None:
        raise LedgerError(f"no callback {callback_id}")
    return to_record(CallbackRecord, row)


async def route_lock(db: Db, conn: AsyncConnection, bill_id: str, payout_id: str | None = None) -> str | None:
    """Take bill B's route row for this transaction, creating it when B is new, and return B's payout;
    with `payout_id`, a bill without one becomes that payout's. Raises LedgerError when the bill is
    another payout's.

    The row serializes "store a callback for bill B" with "record the route to bill B" (see
    `Callbacks.store`): under READ COMMITTED they could otherwise miss each other (the callback finds
    no route, the route finds no callback). Take it before the payout row, as every router does.
    """
    row = (await conn.execute(_route_statement(db.is_postgres), {"bill_id": bill_id, "payout_id": payout_id})).one()
    owner = None if row.payout_id is None else str(row.payout_id)
    if payout_id is not None and owner != payout_id:
        raise LedgerError(f"bill {bill_id!r} already belongs to payout {owner!r}")
    return owner


@functools.cache
def _route_statement(postgres: bool) -> sa.Insert:
    """INSERT INTO bill_routes ... ON CONFLICT (bill_id) DO UPDATE RETURNING payout_id: the row is taken
    (locked) either way, its payout kept once set. Built once per dialect, with bound parameters."""
    insert = postgresql.insert if postgres else sqlite.insert
    statement = insert(bill_routes).values(
        bill_id=sa.bindparam("bill_id", type_=bill_routes.c.bill_id.type),
        payout_id=sa.bindparam("payout_id", type_=bill_routes.c.payout_id.type),
    )
    kept = sa.func.coalesce(bill_routes.c.payout_id, statement.excluded.payout_id)
    return statement.on_conflict_do_update(index_elements=[bill_routes.c.bill_id], set_={"payout_id": kept}).returning(
        bill_routes.c.payout_id
    )


async def route_stored_callbacks(db: Db, conn: AsyncConnection, bill_id: str, payout_id: str) -> None:
    """Callbacks for `bill_id` stored before its route was known now belong to `payout_id`. Call it
    under `route_lock`. They are not signalled yet, so the redelivery sweep tells the workflow."""
    await conn.execute(_ROUTING.routed, {"c_bill": bill_id, "c_payout": payout_id, "c_now": db.now()})


def _answered_at(bill_id: Any) -> sa.ScalarSelect[Any]:
    """When the ledger recorded Portmone's bills.create answer for this bill (None: not yet)."""
    return (
        sa.select(bill_attempts.c.finished_at)
        .where(bill_attempts.c.bill_id == bill_id, bill_attempts.c.state == "answered")
        .limit(1)
        .scalar_subquery()
    )


async def _by_dedupe_key(conn: AsyncConnection, dedupe_key: str) -> CallbackRecord | None:
    row = (await conn.execute(sa.select(callbacks).where(callbacks.c.dedupe_key == dedupe_key))).first()
    return None if row is None else to_record(CallbackRecord, row)


_STORED_VALUES = ("raw_body", "rsp_status", "bill_status", "error_code", "error_description", "verdict")


@functools.cache
def _store_statement(postgres: bool, bill: bool = True) -> sa.Executable:
    """INSERT ... ON CONFLICT (dedupe_key) DO NOTHING RETURNING, routed in its VALUES: by the bill's route
    row taken in a CTE (PostgreSQL, `_route_statement`), by `route_of` (SQLite); `bill`: the callback
    names a bill.

    Each returned row has the callback's columns, `inserted` and `bill_answered_at`. PostgreSQL: the
    insert is a CTE, and a UNION ALL returns the row stored before when it inserted nothing. That row
    is read in the statement's snapshot, so a copy committed by a concurrent request while the insert
    waited for it is not there: no row at all (the caller reads it again). Built once per dialect, with
    bound parameters (`dedupe_key`, `bill_id`, `now` and `_STORED_VALUES`): building it is most of a
    callback's Python cost otherwise.
    """
    bill_id = sa.bindparam("bill_id", type_=callbacks.c.bill_id.type)
    now = sa.bindparam("now", type_=UTCDateTime())
    route: sa.ColumnElement[Any]
    if not bill:  # a callback that names no bill has no route
        route = sa.cast(sa.null(), callbacks.c.payout_id.type)
    elif postgres:  # the bill's route row taken first (`route_lock`): see `Callbacks.store`
        taken = _route_statement(True).cte("route")
        route = sa.select(taken.c.payout_id).scalar_subquery()
    else:
        route = route_of(bill_id)
    row = {
        "dedupe_key": sa.bindparam("dedupe_key", type_=callbacks.c.dedupe_key.type),
        "bill_id": bill_id,
        "payout_id": route,
        "received_at": now,
        "routed_at": sa.case((route.is_not(None), now), else_=sa.null()),
        **{name: sa.bindparam(name, type_=callbacks.c[name].type) for name in _STORED_VALUES},
    }
    answered = _answered_at(bill_id).label("bill_answered_at")
    if postgres:
        pg = postgresql.insert(callbacks).values(row).on_conflict_do_nothing(index_elements=[callbacks.c.dedupe_key])
        ins = pg.returning(*callbacks.c).cte("stored")
        fresh = sa.select(*ins.c, sa.true().label("inserted"), answered)
        before = sa.select(
            *callbacks.c, sa.false().label("inserted"), sa.cast(sa.null(), UTCDateTime()).label("bill_answered_at")
        ).where(callbacks.c.dedupe_key == sa.bindparam("dedupe_key"), ~sa.exists(sa.select(ins.c.id)))
        return fresh.union_all(before)
    lite = sqlite.insert(callbacks).values(row).on_conflict_do_nothing(index_elements=[callbacks.c.dedupe_key])
    return lite.returning(*callbacks.c, sa.true().label("inserted"), answered)


async def _store_once(db: Db, *, dedupe_key: str, bill_id: str | None, values: dict[str, Any]) -> StoreCallbackResult:
    """Store (or find) the callback with one statement; a second only when the first found a copy that a
    concurrent request had not yet committed when it started (PostgreSQL) or a copy at all (SQLite)."""
    statement = _store_statement(db.is_postgres, bill_id is not None)
    params = {"dedupe_key": dedupe_key, "bill_id": bill_id, "payout_id": None, "now": db.now(), **values}
    for _ in range(3):
        async with db.statement() as conn:
            row = (await conn.execute(statement, params)).first()
            if row is not None:
                m = row._mapping
                callback = to_record(CallbackRecord, row)
                return StoreCallbackResult(
                    callback=callback,
                    inserted=bool(m["inserted"]),
                    payout_id=callback.payout_id,
                    bill_answered_at=m["bill_answered_at"] if m["inserted"] and callback.payout_id else None,
                )
            existing = await _by_dedupe_key(conn, dedupe_key)
        if existing is not None:
            return StoreCallbackResult(callback=existing, inserted=False, payout_id=existing.payout_id)
        # stored and deleted in between (only a test clears the table): insert again
    raise LedgerError(f"could not store callback {dedupe_key!r}")


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


class _RoutingStatements:
    """The statements every payout's bill round sends, built once (bound: `c_bill`, `c_payout`, `c_id`,
    `c_now`)."""

    def __init__(self) -> None:
        c = callbacks.c
        bill = c.bill_id == sa.bindparam("c_bill", type_=c.bill_id.type)
        payout = sa.bindparam("c_payout", type_=c.payout_id.type)
        now = sa.bindparam("c_now", type_=c.processed_at.type)
        self.undelivered = (
            sa.select(callbacks).where(bill, c.payout_id == payout, c.processed_at.is_(None)).order_by(c.id)
        )
        self.routed = sa.update(callbacks).where(bill, c.payout_id.is_(None)).values(payout_id=payout, routed_at=now)
        chosen = c.id == sa.bindparam("c_id", type_=c.id.type)
        self.processed = (
            sa.update(callbacks).where(chosen, c.processed_at.is_(None)).values(processed_at=now).returning(*c)
        )


_ROUTING = _RoutingStatements()
