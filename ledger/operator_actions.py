"""`ledger.operator_actions`: the operators' audit trail, one row per action (retry, mark_paid, cancel, …),
once per idempotency key."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.attempts import confirm_no_money
from ledger.db import Operations
from ledger.errors import LedgerError
from ledger.payout_rows import require_payout
from ledger.records import OperatorActionRecord, to_record
from ledger.schema import operator_actions


class OperatorActions(Operations):
    async def record(
        self,
        *,
        payout_id: str,
        action: str,
        operator: str,
        reason: str | None = None,
        reference: str | None = None,
        details: dict[str, Any] | None = None,
        idempotency_key: str | None = None,
        confirms: Sequence[tuple[int, str]] = (),
    ) -> OperatorActionRecord:
        """One audit row per idempotency key. `confirms`: (attempt id, evidence) of the bill attempts this
        action confirms hold no money (the operator checked Portmone), as they were shown: recorded in the
        same transaction so the new-bill rule sees the confirmation exactly when the audit row exists, and
        only for an attempt whose evidence has not changed since (`ledger.attempts.confirm_no_money`)."""
        if not action or not operator:
            raise ValueError("action and operator are required")
        for _ in range(2):
            try:
                async with self._db.write() as conn:
                    if idempotency_key is not None:
                        existing = await _by_key(conn, idempotency_key)
                        if existing is not None:
                            if (existing.payout_id, existing.action) != (payout_id, action):
                                raise LedgerError(
                                    f"idempotency key {idempotency_key!r} was used for "
                                    f"{existing.action} on {existing.payout_id}"
                                )
                            await confirm_no_money(conn, payout_id, confirms, existing.id)
                            return existing
                    await require_payout(conn, payout_id)
                    result = await conn.execute(
                        sa.insert(operator_actions).values(
                            payout_id=payout_id,
                            action=action,
                            operator=operator,
                            reason=reason,
                            reference=reference,
                            details=details,
                            idempotency_key=idempotency_key,
                            created_at=self._db.now(),
                        )
                    )
                    new_id = result.inserted_primary_key[0]  # type: ignore[index]
                    row = (await conn.execute(sa.select(operator_actions).where(operator_actions.c.id == new_id))).one()
                    recorded = to_record(OperatorActionRecord, row)
                    await confirm_no_money(conn, payout_id, confirms, recorded.id)
                    return recorded
            except sa_exc.IntegrityError:
                if idempotency_key is None:
                    raise
                # the same key was recorded concurrently: the next pass returns that row
        raise LedgerError(f"could not record operator action {idempotency_key!r}")

    async def for_payout(self, payout_id: str) -> list[OperatorActionRecord]:
        query = (
            sa.select(operator_actions).where(operator_actions.c.payout_id == payout_id).order_by(operator_actions.c.id)
        )
        async with self._db.read() as conn:
            return [to_record(OperatorActionRecord, row) for row in await conn.execute(query)]


async def _by_key(conn: AsyncConnection, key: str) -> OperatorActionRecord | None:
    row = (await conn.execute(sa.select(operator_actions).where(operator_actions.c.idempotency_key == key))).first()
    return None if row is None else to_record(OperatorActionRecord, row)
