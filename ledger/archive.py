"""`ledger.archive`: every Portmone request (redacted) and response, kept for the retention period."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from ledger.db import Operations
from ledger.records import ExchangeRecord, to_record
from ledger.schema import exchange_archive


class Archive(Operations):
    async def record(
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
        """Archive one exchange; returns its id."""
        async with self._db.write() as conn:
            result = await conn.execute(
                sa.insert(exchange_archive).values(
                    created_at=self._db.now(),
                    method=method,
                    request_redacted=dict(request_redacted),
                    response_body=response_body,
                    http_status=http_status,
                    outcome=outcome,
                    elapsed_ms=int(elapsed_ms),
                    receipt_id=receipt_id,
                    payout_id=payout_id,
                    bill_id=bill_id,
                    telegram_id=telegram_id,
                )
            )
            return int(result.inserted_primary_key[0])  # type: ignore[index]

    async def for_payout(self, payout_id: str) -> list[ExchangeRecord]:
        query = (
            sa.select(exchange_archive).where(exchange_archive.c.payout_id == payout_id).order_by(exchange_archive.c.id)
        )
        async with self._db.read() as conn:
            return [to_record(ExchangeRecord, row) for row in await conn.execute(query)]

    async def prune(self, *, older_than: datetime) -> int:
        """Delete exchanges created before `older_than` (timezone-aware); returns how many."""
        if older_than.tzinfo is None:
            raise ValueError("older_than must be timezone-aware")
        async with self._db.write() as conn:
            result = await conn.execute(sa.delete(exchange_archive).where(exchange_archive.c.created_at < older_than))
            return int(result.rowcount)
