"""`ledger.reports`: read-only reports for operators and reconciliation: the manual queue's timing, a
consistent snapshot. Each reads in one transaction, so what it returns is one moment of the ledger.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.db import Operations
from ledger.records import AttemptRecord, CallbackRecord, PayoutRecord, to_record
from ledger.schema import bill_attempts, callbacks, payouts, status_history
from payouts.status import TERMINAL, PayoutStatus

_TERMINAL_VALUES = sorted(s.value for s in TERMINAL)


@dataclass(frozen=True)
class ReconciliationSnapshot:
    """What the ledger knows about the payouts in scope, read in one transaction."""

    payouts: list[PayoutRecord]
    # When each payout entered the status it is in now (from the status history).
    entered_status_at: dict[str, datetime]
    # Every bill attempt of those payouts that holds a bill id.
    bills: list[AttemptRecord]
    # Callbacks received before the cut-off: routed to those payouts, or (received within the active
    # window) routed to no payout at all.
    callbacks: list[CallbackRecord]


async def _entered(conn: AsyncConnection, payout_ids: Sequence[str]) -> dict[str, datetime]:
    """When each payout last entered its current status."""
    if not payout_ids:
        return {}
    query = (
        sa.select(status_history.c.payout_id, sa.func.max(status_history.c.created_at))
        .join(payouts, payouts.c.id == status_history.c.payout_id)
        .where(status_history.c.payout_id.in_(list(payout_ids)), status_history.c.to_status == payouts.c.status)
        .group_by(status_history.c.payout_id)
    )
    return {str(row[0]): row[1] for row in await conn.execute(query)}


class Reports(Operations):
    async def entered_status_at(self, payout_ids: Sequence[str]) -> dict[str, datetime]:
        """When each of these payouts entered the status it is in now (absent: no history row); the manual
        queue's age."""
        async with self._db.read() as conn:
            return await _entered(conn, payout_ids)

    async def queue_summary(self, status: PayoutStatus) -> tuple[int, datetime | None]:
        """How many payouts are in `status`, and when the one waiting longest entered it (None when none);
        the gauges of the manual queue."""
        value = PayoutStatus(status).value
        entered = (
            sa.select(sa.func.max(status_history.c.created_at).label("entered"))
            .join(payouts, payouts.c.id == status_history.c.payout_id)
            .where(payouts.c.status == value, status_history.c.to_status == value)
            .group_by(status_history.c.payout_id)
            .subquery()
        )
        count = sa.select(sa.func.count()).select_from(payouts).where(payouts.c.status == value)
        async with self._db.read() as conn:
            size = int((await conn.execute(count)).scalar_one())
            oldest = (await conn.execute(sa.select(sa.func.min(entered.c.entered)))).scalar_one()
        return size, oldest

    async def payouts_in_status(self, status: PayoutStatus, *, limit: int = 10_000) -> list[PayoutRecord]:
        """Payouts in `status`, longest unchanged first."""
        query = (
            sa.select(payouts)
            .where(payouts.c.status == PayoutStatus(status).value)
            .order_by(payouts.c.updated_at, payouts.c.id)
            .limit(limit)
        )
        async with self._db.read() as conn:
            return [to_record(PayoutRecord, row) for row in await conn.execute(query)]

    async def reconciliation_snapshot(self, *, before: datetime, active_since: datetime) -> ReconciliationSnapshot:
        """Payouts created before `before` that are still open or changed at or after `active_since`,
        their bills, their callbacks received before `before`, and the callbacks for unknown bills
        received between `active_since` and `before`."""
        if before.tzinfo is None or active_since.tzinfo is None:
            raise ValueError("before and active_since must be timezone-aware")
        scope = (
            sa.select(payouts)
            .where(
                payouts.c.created_at < before,
                sa.or_(payouts.c.status.not_in(_TERMINAL_VALUES), payouts.c.updated_at >= active_since),
            )
            .order_by(payouts.c.id)
        )
        async with self._db.read() as conn:
            found = [to_record(PayoutRecord, row) for row in await conn.execute(scope)]
            ids = [p.id for p in found]
            entered = await _entered(conn, ids)
            bills: list[AttemptRecord] = []
            routed: list[CallbackRecord] = []
            if ids:
                bill_rows = await conn.execute(
                    sa.select(bill_attempts)
                    .where(bill_attempts.c.payout_id.in_(ids), bill_attempts.c.bill_id.is_not(None))
                    .order_by(bill_attempts.c.payout_id, bill_attempts.c.attempt_no)
                )
                bills = [to_record(AttemptRecord, row) for row in bill_rows]
                callback_rows = await conn.execute(
                    sa.select(callbacks)
                    .where(callbacks.c.payout_id.in_(ids), callbacks.c.received_at < before)
                    .order_by(callbacks.c.id)
                )
                routed = [to_record(CallbackRecord, row) for row in callback_rows]
            unrouted_rows = await conn.execute(
                sa.select(callbacks)
                .where(
                    callbacks.c.payout_id.is_(None),
                    callbacks.c.received_at < before,
                    callbacks.c.received_at >= active_since,
                )
                .order_by(callbacks.c.id)
            )
            unrouted = [to_record(CallbackRecord, row) for row in unrouted_rows]
        return ReconciliationSnapshot(
            payouts=found, entered_status_at=entered, bills=bills, callbacks=routed + unrouted
        )
