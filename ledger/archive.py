"""`ledger.archive`: every Portmone request (redacted) and response, kept for the retention period."""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.db import Db, Operations
from ledger.records import ExchangeEntry, ExchangeRecord, to_record
from ledger.schema import exchange_archive


class Archive(Operations):
    async def record(self, entry: ExchangeEntry) -> int:
        """Archive one exchange; returns its id."""
        async with self._db.write() as conn:
            return await archive_exchange(self._db, conn, entry)

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


async def archive_exchange(db: Db, conn: AsyncConnection, entry: ExchangeEntry) -> int:
    """Archive one exchange inside a transaction (the attempt log writes it with the attempt's ending)."""
    values = {**asdict(entry), "request_redacted": dict(entry.request_redacted), "elapsed_ms": int(entry.elapsed_ms)}
    result = await conn.execute(sa.insert(exchange_archive).values(created_at=db.now(), **values))
    return int(result.inserted_primary_key[0])  # type: ignore[index]
