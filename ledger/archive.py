"""The exchange archive: every Portmone request (redacted) and response, kept for the retention period."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from ledger.db import Db
from ledger.records import ExchangeRecord
from ledger.schema import exchange_archive


def exchange_record(row: sa.Row[Any]) -> ExchangeRecord:
    m = row._mapping
    return ExchangeRecord(
        id=m["id"],
        created_at=m["created_at"],
        method=m["method"],
        request_redacted=dict(m["request_redacted"]),
        response_body=m["response_body"],
        http_status=m["http_status"],
        outcome=m["outcome"],
        elapsed_ms=m["elapsed_ms"],
        receipt_id=m["receipt_id"],
        payout_id=m["payout_id"],
        bill_id=m["bill_id"],
        telegram_id=m["telegram_id"],
    )


async def archive_exchange(
    db: Db,
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
    async with db.write() as conn:
        result = await conn.execute(
            sa.insert(exchange_archive).values(
                created_at=db.now(),
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


async def exchanges_for(db: Db, payout_id: str) -> list[ExchangeRecord]:
    query = sa.select(exchange_archive).where(exchange_archive.c.payout_id == payout_id).order_by(exchange_archive.c.id)
    async with db.read() as conn:
        return [exchange_record(row) for row in await conn.execute(query)]


async def prune_archive(db: Db, *, older_than: datetime) -> int:
    """Delete exchanges created before `older_than` (timezone-aware); returns how many."""
    if older_than.tzinfo is None:
        raise ValueError("older_than must be timezone-aware")
    async with db.write() as conn:
        result = await conn.execute(sa.delete(exchange_archive).where(exchange_archive.c.created_at < older_than))
        return int(result.rowcount)
