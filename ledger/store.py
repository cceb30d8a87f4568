"""`Ledger`: the one object the activities and the webhook use (each method is one transaction)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger import archive, attempts, callbacks, operator_actions, payouts, reports, reserve
from ledger.db import Clock, Db, utc_now
from ledger.engine import make_engine
from ledger.outbox import Outbox
from ledger.reconciliation_reports import ReconciliationReports
from ledger.records import (
    AttemptRecord,
    AttemptState,
    CallbackRecord,
    ExchangeRecord,
    OpenBill,
    OperatorActionRecord,
    PayoutRecord,
    ReserveRequest,
    ReserveResult,
    StatusChangeRecord,
    StoreCallbackResult,
)
from ledger.reports import ReconciliationSnapshot
from payouts.status import PayoutStatus


class Ledger:
    """The durable record of payouts (SQLite or PostgreSQL through SQLAlchemy Core, async).

    Every method runs in its own transaction. Connection-level failures raise `LedgerUnavailable`;
    times are timezone-aware UTC; money is integer kopecks.
    """

    def __init__(self, engine: AsyncEngine, *, clock: Clock = utc_now) -> None:
        self._db = Db(engine, clock)
        self.outbox = Outbox(self._db)
        self.reconciliation_reports = ReconciliationReports(self._db)

    @classmethod
    def from_url(cls, url: str, *, clock: Clock = utc_now) -> Ledger:
        """A ledger with its own engine: WAL, busy timeout and foreign keys on SQLite (parent directory
        created), a bounded pre-pinged pool on PostgreSQL. Run `ledger.upgrade(url)` first."""
        return cls(make_engine(url), clock=clock)

    @property
    def engine(self) -> AsyncEngine:
        return self._db.engine

    async def aclose(self) -> None:
        await self._db.engine.dispose()

    async def ping(self) -> None:
        """Raises LedgerUnavailable when the database does not answer."""
        async with self._db.read() as conn:
            await conn.execute(sa.text("SELECT 1"))

    # payouts

    async def reserve(self, req: ReserveRequest) -> ReserveResult:
        return await reserve.reserve(self._db, req)

    async def transition(
        self,
        payout_id: str,
        to: PayoutStatus,
        *,
        reason: str | None = None,
        portmone_status: str | None = None,
        error_code: str | None = None,
        error_description: str | None = None,
    ) -> PayoutRecord:
        return await payouts.transition(
            self._db,
            payout_id,
            to,
            reason=reason,
            portmone_status=portmone_status,
            error_code=error_code,
            error_description=error_description,
        )

    async def get_payout(self, payout_id: str) -> PayoutRecord | None:
        return await payouts.get_payout(self._db, payout_id)

    async def get_by_receipt(self, receipt_id: str) -> PayoutRecord | None:
        return await payouts.get_by_receipt(self._db, receipt_id)

    async def get_by_bill(self, bill_id: str) -> PayoutRecord | None:
        return await payouts.get_by_bill(self._db, bill_id)

    async def list_payouts(
        self, *, status: PayoutStatus | None = None, reason: str | None = None, limit: int = 100
    ) -> list[PayoutRecord]:
        return await payouts.list_payouts(self._db, status=status, reason=reason, limit=limit)

    async def status_history(self, payout_id: str) -> list[StatusChangeRecord]:
        return await payouts.history(self._db, payout_id)

    async def day_totals(self, business_day: date) -> tuple[int, int]:
        """(count, kopecks) reserved for the day and not released."""
        return await payouts.day_totals(self._db, business_day)

    # bill attempts

    async def begin_attempt(self, payout_id: str, round_no: int) -> AttemptRecord:
        return await attempts.begin_attempt(self._db, payout_id, round_no)

    async def finish_attempt(
        self,
        attempt_id: int,
        state: AttemptState,
        *,
        bill_id: str | None = None,
        error_code: str | None = None,
        detail: str | None = None,
    ) -> AttemptRecord:
        return await attempts.finish_attempt(
            self._db, attempt_id, state, bill_id=bill_id, error_code=error_code, detail=detail
        )

    async def attempts(self, payout_id: str, round_no: int | None = None) -> list[AttemptRecord]:
        return await attempts.attempts(self._db, payout_id, round_no)

    async def open_bills(self, payout_id: str) -> list[OpenBill]:
        """The earlier bills that stop a new one (the new-bill rule's evidence), for operators and escalations."""
        return await attempts.open_bills(self._db, payout_id)

    # callbacks

    async def set_bill_id(self, payout_id: str, bill_id: str) -> list[CallbackRecord]:
        return await callbacks.set_bill_id(self._db, payout_id, bill_id)

    async def store_callback(
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
        return await callbacks.store_callback(
            self._db,
            dedupe_key=dedupe_key,
            bill_id=bill_id,
            raw_body=raw_body,
            rsp_status=rsp_status,
            bill_status=bill_status,
            error_code=error_code,
            error_description=error_description,
            verdict=verdict,
        )

    async def route_by_echo(
        self, callback_id: int, *, receipt_id: str, amount_kopecks: int | None, user_key: str
    ) -> str | None:
        return await callbacks.route_by_echo(
            self._db, callback_id, receipt_id=receipt_id, amount_kopecks=amount_kopecks, user_key=user_key
        )

    async def mark_signalled(self, callback_id: int) -> None:
        await callbacks.mark_signalled(self._db, callback_id)

    async def callbacks_to_redeliver(self, *, stored_before: datetime, limit: int = 100) -> list[CallbackRecord]:
        return await callbacks.to_redeliver(self._db, stored_before=stored_before, limit=limit)

    async def undelivered_callbacks(self, payout_id: str) -> list[CallbackRecord]:
        return await callbacks.undelivered_for(self._db, payout_id)

    async def mark_callback_processed(self, callback_id: int) -> CallbackRecord:
        return await callbacks.mark_callback_processed(self._db, callback_id)

    async def unrouted_callbacks(self, *, limit: int = 1000) -> list[CallbackRecord]:
        return await callbacks.unrouted_callbacks(self._db, limit=limit)

    async def callbacks_for(self, payout_id: str) -> list[CallbackRecord]:
        return await callbacks.callbacks_for(self._db, payout_id)

    # exchange archive

    async def archive_exchange(
        self,
        *,
        method: str,
        request_redacted: dict[str, str],
        response_body: str | None,
        http_status: int | None,
        outcome: str,
        elapsed_ms: int,
        receipt_id: str | None = None,
        payout_id: str | None = None,
        bill_id: str | None = None,
        telegram_id: int | None = None,
    ) -> int:
        return await archive.archive_exchange(
            self._db,
            method=method,
            request_redacted=request_redacted,
            response_body=response_body,
            http_status=http_status,
            outcome=outcome,
            elapsed_ms=elapsed_ms,
            receipt_id=receipt_id,
            payout_id=payout_id,
            bill_id=bill_id,
            telegram_id=telegram_id,
        )

    async def exchanges_for(self, payout_id: str) -> list[ExchangeRecord]:
        return await archive.exchanges_for(self._db, payout_id)

    async def prune_archive(self, *, older_than: datetime) -> int:
        return await archive.prune_archive(self._db, older_than=older_than)

    # operator actions

    async def record_operator_action(
        self,
        *,
        payout_id: str,
        action: str,
        operator: str,
        reason: str | None = None,
        reference: str | None = None,
        details: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        confirms_attempts: Sequence[int] = (),
    ) -> OperatorActionRecord:
        return await operator_actions.record_operator_action(
            self._db,
            payout_id=payout_id,
            action=action,
            operator=operator,
            reason=reason,
            reference=reference,
            details=details,
            idempotency_key=idempotency_key,
            confirms_attempts=confirms_attempts,
        )

    async def operator_actions(self, payout_id: str) -> list[OperatorActionRecord]:
        return await operator_actions.operator_actions_for(self._db, payout_id)

    # reports (read-only)

    async def entered_status_at(self, payout_ids: list[str]) -> dict[str, datetime]:
        """When each payout entered the status it is in now (the manual queue's age)."""
        return await reports.entered_status_at(self._db, payout_ids)

    async def queue_summary(self, status: PayoutStatus) -> tuple[int, datetime | None]:
        """How many payouts are in `status` and when the longest-waiting one entered it (the gauges)."""
        return await reports.queue_summary(self._db, status)

    async def payouts_in_status(self, status: PayoutStatus, *, limit: int = 10_000) -> list[PayoutRecord]:
        """Payouts in `status`, longest unchanged first."""
        return await reports.payouts_in_status(self._db, status, limit=limit)

    async def reconciliation_snapshot(self, *, before: datetime, active_since: datetime) -> ReconciliationSnapshot:
        """One consistent read for reconciliation: payouts created before `before` that are open or changed
        since `active_since`, their bills and callbacks, and the unrouted callbacks of that window."""
        return await reports.reconciliation_snapshot(self._db, before=before, active_since=active_since)
