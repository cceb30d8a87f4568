"""The bill-attempt write-ahead log: `prepared` before each bills.create send, then how it ended."""

from __future__ import annotations

from typing import Any, cast

import sqlalchemy as sa

from ledger.db import Db
from ledger.errors import LedgerError
from ledger.payouts import require_payout
from ledger.records import AttemptRecord, AttemptState
from ledger.schema import bill_attempts

FINAL_STATES: frozenset[str] = frozenset({"answered", "not_sent", "unknown"})


def attempt_record(row: sa.Row[Any]) -> AttemptRecord:
    m = row._mapping
    return AttemptRecord(
        id=m["id"],
        payout_id=m["payout_id"],
        round_no=m["round_no"],
        attempt_no=m["attempt_no"],
        state=cast(AttemptState, m["state"]),
        bill_id=m["bill_id"],
        error_code=m["error_code"],
        detail=m["detail"],
        prepared_at=m["prepared_at"],
        finished_at=m["finished_at"],
    )


async def begin_attempt(db: Db, payout_id: str, round_no: int) -> AttemptRecord:
    if round_no < 1:
        raise ValueError("round_no starts at 1")
    async with db.write() as conn:
        await require_payout(conn, payout_id, lock=True)  # serializes attempt numbering per payout
        last = await conn.scalar(
            sa.select(sa.func.max(bill_attempts.c.attempt_no)).where(bill_attempts.c.payout_id == payout_id)
        )
        result = await conn.execute(
            sa.insert(bill_attempts).values(
                payout_id=payout_id,
                round_no=round_no,
                attempt_no=int(last or 0) + 1,
                state="prepared",
                prepared_at=db.now(),
            )
        )
        attempt_id = result.inserted_primary_key[0] if result.inserted_primary_key else None
        row = (await conn.execute(sa.select(bill_attempts).where(bill_attempts.c.id == attempt_id))).one()
        return attempt_record(row)


async def finish_attempt(
    db: Db,
    attempt_id: int,
    state: AttemptState,
    *,
    bill_id: str | None = None,
    error_code: str | None = None,
    detail: str | None = None,
) -> AttemptRecord:
    if state not in FINAL_STATES:
        raise ValueError(f"an attempt finishes as one of {sorted(FINAL_STATES)}, not {state!r}")
    query = sa.select(bill_attempts).where(bill_attempts.c.id == attempt_id)
    async with db.write() as conn:
        row = (await conn.execute(query.with_for_update())).first()
        if row is None:
            raise LedgerError(f"no bill attempt {attempt_id}")
        current = attempt_record(row)
        if current.state == state:
            return current  # a retried finish: already recorded
        if current.state != "prepared":
            raise LedgerError(f"bill attempt {attempt_id} already finished as {current.state!r}, not {state!r}")
        await conn.execute(
            sa.update(bill_attempts)
            .where(bill_attempts.c.id == attempt_id)
            .values(state=state, bill_id=bill_id, error_code=error_code, detail=detail, finished_at=db.now())
        )
        return attempt_record((await conn.execute(query)).one())


async def attempts(db: Db, payout_id: str, round_no: int | None = None) -> list[AttemptRecord]:
    query = sa.select(bill_attempts).where(bill_attempts.c.payout_id == payout_id).order_by(bill_attempts.c.attempt_no)
    if round_no is not None:
        query = query.where(bill_attempts.c.round_no == round_no)
    async with db.read() as conn:
        return [attempt_record(row) for row in await conn.execute(query)]
