"""`ledger.payouts`: reserve a payout, move its status, look it up, the day's totals."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from ledger.attempts import attempts_of, find_open_bills
from ledger.callbacks import mark_processed
from ledger.db import Operations
from ledger.errors import LedgerError
from ledger.payout_rows import change_status, fetch_payout, payout_by_receipt, payout_id_for_bill, require_payout
from ledger.records import (
    CallbackRecord,
    Escalation,
    PayoutFacts,
    PayoutRecord,
    ReserveRequest,
    ReserveResult,
    StatusChangeRecord,
    StatusMove,
    to_record,
)
from ledger.reserve import PASSES, reserve_once, validate
from ledger.schema import callbacks, daily_totals, payouts, status_history
from payouts.status import PayoutStatus


class Payouts(Operations):
    async def reserve(self, req: ReserveRequest) -> ReserveResult:
        """Gate and reserve in one transaction (the rules are in `ledger/reserve.py`): the row under its unique
        receipt and fiscal key, within the per-user and daily limits; the same owner asking again gets the
        stored answer."""
        validate(req)
        last: sa_exc.IntegrityError | None = None
        for _ in range(PASSES):
            try:
                async with self._db.write() as conn:
                    return await reserve_once(self._db, conn, req)
            except sa_exc.IntegrityError as exc:
                last = exc
        raise LedgerError(f"could not reserve receipt {req.receipt_id!r}: {last}") from last

    async def transition(
        self,
        payout_id: str,
        to: PayoutStatus,
        *,
        reason: str | None = None,
        portmone_status: str | None = None,
        error_code: str | None = None,
        error_description: str | None = None,
        bill_id: str | None = None,
        processed_callback: int | None = None,
    ) -> StatusMove:
        """Move the payout to `to` (`payouts.status` decides what is legal; a replay writes nothing), and
        say whether its status changed. `bill_id`: the bill the move is about (PAID: the bill that paid);
        `processed_callback`: the callback that decided the move, marked processed in the same transaction."""
        async with self._db.write() as conn:
            row = await require_payout(conn, payout_id, lock=True)
            after = await change_status(
                self._db,
                conn,
                row,
                PayoutStatus(to),
                reason=reason,
                portmone_status=portmone_status,
                error_code=error_code,
                error_description=error_description,
                bill_id=bill_id,
            )
            if processed_callback is not None:
                await mark_processed(self._db, conn, processed_callback)
            return StatusMove(payout=after, changed=after.status != row.status)

    async def escalate(
        self,
        payout_id: str,
        *,
        reason: str,
        reason_if_bill_open: str | None = None,
        portmone_status: str | None = None,
        error_code: str | None = None,
        error_description: str | None = None,
        processed_callback: int | None = None,
    ) -> Escalation:
        """MANUAL_REVIEW, with the bills that may hold money (the new-bill rule's evidence) read under the
        payout's lock: with such a bill, `reason_if_bill_open` (when given) is the reason. One transaction."""
        async with self._db.write() as conn:
            row = await require_payout(conn, payout_id, lock=True)
            open_bills = await find_open_bills(conn, payout_id)
            why = reason_if_bill_open if open_bills and reason_if_bill_open else reason
            after = await change_status(
                self._db,
                conn,
                row,
                PayoutStatus.MANUAL_REVIEW,
                reason=why,
                portmone_status=portmone_status,
                error_code=error_code,
                error_description=error_description,
            )
            if processed_callback is not None:
                await mark_processed(self._db, conn, processed_callback)
            return Escalation(reason=why, open_bills=open_bills, changed=after.status != row.status)

    async def facts(self, payout_id: str) -> PayoutFacts | None:
        """The payout with its evidence, in one read: attempts, the bills that may hold money, the
        callbacks routed to it, and when it entered its status."""
        async with self._db.read() as conn:
            row = await fetch_payout(conn, payout_id)
            if row is None:
                return None
            since = await conn.scalar(
                sa.select(sa.func.max(status_history.c.created_at)).where(
                    status_history.c.payout_id == payout_id, status_history.c.to_status == row.status.value
                )
            )
            stored = await conn.execute(
                sa.select(callbacks).where(callbacks.c.payout_id == payout_id).order_by(callbacks.c.id)
            )
            return PayoutFacts(
                payout=row,
                since=since or row.updated_at,
                attempts=await attempts_of(conn, payout_id),
                open_bills=await find_open_bills(conn, payout_id),
                callbacks=[to_record(CallbackRecord, r) for r in stored],
            )

    async def get(self, payout_id: str) -> PayoutRecord | None:
        async with self._db.read() as conn:
            return await fetch_payout(conn, payout_id)

    async def by_receipt(self, receipt_id: str) -> PayoutRecord | None:
        async with self._db.read() as conn:
            return await payout_by_receipt(conn, receipt_id)

    async def by_bill(self, bill_id: str) -> PayoutRecord | None:
        """The payout of a bill: its current one, or one of an earlier round."""
        async with self._db.read() as conn:
            payout_id = await payout_id_for_bill(conn, bill_id)
            return None if payout_id is None else await fetch_payout(conn, payout_id)

    async def find(
        self, *, status: PayoutStatus | None = None, reason: str | None = None, limit: int = 100
    ) -> list[PayoutRecord]:
        """Payouts (with this status and reason when given), oldest first."""
        query = sa.select(payouts).order_by(payouts.c.created_at, payouts.c.id).limit(limit)
        if status is not None:
            query = query.where(payouts.c.status == PayoutStatus(status).value)
        if reason is not None:
            query = query.where(payouts.c.reason == reason)
        async with self._db.read() as conn:
            return [to_record(PayoutRecord, row) for row in await conn.execute(query)]

    async def history(self, payout_id: str) -> list[StatusChangeRecord]:
        query = sa.select(status_history).where(status_history.c.payout_id == payout_id).order_by(status_history.c.id)
        async with self._db.read() as conn:
            return [to_record(StatusChangeRecord, row) for row in await conn.execute(query)]

    async def day_totals(self, business_day: date) -> tuple[int, int]:
        """(count, kopecks) reserved for the day and not released."""
        query = sa.select(daily_totals.c.reserved_count, daily_totals.c.reserved_kopecks).where(
            daily_totals.c.business_day == business_day
        )
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        return (0, 0) if row is None else (int(row[0]), int(row[1]))
