"""`ledger.outbox`, the transactional outbox: payout events written with the status change they report, and their
delivery to each channel (payouts.events).

`record_event` runs inside the transaction that changes a payout's status, so an event exists exactly
when its change does. A relay claims undelivered events per channel (`Outbox.claim`, safe with several
relays: `FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one writer), delivers them and reports back.
A payout's events reach each channel in order: a later one waits while an earlier one is undelivered.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.db import Db, Operations
from ledger.records import OutboxBacklog, OutboxDelivery, PayoutRecord, to_record
from ledger.schema import outbox, outbox_channels, outbox_deliveries, payouts
from payouts.events import PayoutEvent, PayoutEventKind
from payouts.status import PayoutStatus

# The status changes worth telling the world, and what they are called.
EVENT_KINDS: dict[PayoutStatus, PayoutEventKind] = {
    PayoutStatus.RESERVED: PayoutEventKind.PENDING,
    PayoutStatus.PAID: PayoutEventKind.SUCCESS,
    PayoutStatus.FAILED: PayoutEventKind.FAILED,
    PayoutStatus.CANCELLED: PayoutEventKind.FAILED,
    PayoutStatus.REJECTED: PayoutEventKind.FAILED,
    PayoutStatus.MANUAL_REVIEW: PayoutEventKind.MANUAL_REVIEW,
}
_ERROR_CHARS = 500


def event_id(payout_id: str, seq: int, kind: PayoutEventKind) -> str:
    """Stable for one occurrence: the same on every delivery attempt, unique in the outbox."""
    return f"{payout_id}:{seq}:{kind.value}"


async def record_event(db: Db, conn: AsyncConnection, payout: PayoutRecord) -> None:
    """Write the event for the status `payout` just entered (if it reports one), with one delivery row
    per registered channel. Call it in the transaction of the change, under the payout row's lock."""
    kind = EVENT_KINDS.get(payout.status)
    if kind is None:
        return
    last = await conn.scalar(sa.select(sa.func.max(outbox.c.seq)).where(outbox.c.payout_id == payout.id))
    seq = int(last or 0) + 1
    now = db.now()
    result = await conn.execute(
        sa.insert(outbox).values(
            event_id=event_id(payout.id, seq, kind),
            payout_id=payout.id,
            seq=seq,
            kind=kind.value,
            receipt_id=payout.receipt_id,
            telegram_id=payout.telegram_id,
            status=payout.status.value,
            amount_kopecks=payout.amount_kopecks,
            language=payout.language,
            bill_id=payout.bill_id,
            reason=payout.reason,
            error_code=payout.error_code,
            error_description=payout.error_description,
            occurred_at=now,
        )
    )
    outbox_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    d = outbox_deliveries.c
    await conn.execute(
        sa.insert(outbox_deliveries).from_select(
            [d.outbox_id, d.channel, d.payout_id, d.seq, d.attempts, d.next_attempt_at],
            sa.select(
                sa.literal(outbox_id, outbox.c.id.type),
                outbox_channels.c.name,
                sa.literal(payout.id, outbox.c.payout_id.type),
                sa.literal(seq, outbox.c.seq.type),
                sa.literal(0, outbox_deliveries.c.attempts.type),
                sa.literal(now, outbox_deliveries.c.next_attempt_at.type),
            ),
        )
    )


class Outbox(Operations):
    """Payout events and their delivery per channel."""

    async def register(self, channels: Sequence[str]) -> None:
        """Channels that receive the events written from now on (idempotent)."""
        if not channels:
            return
        insert = postgresql.insert if self._db.is_postgres else sqlite.insert
        now = self._db.now()
        async with self._db.write() as conn:
            await conn.execute(
                insert(outbox_channels)
                .values([{"name": name, "registered_at": now} for name in channels])
                .on_conflict_do_nothing(index_elements=[outbox_channels.c.name])
            )

    async def claim(self, channel: str, *, limit: int, lease: timedelta) -> list[OutboxDelivery]:
        """Up to `limit` events due for `channel`, oldest first, at most one per payout (its earliest
        undelivered one). They are leased: no other relay gets them before `lease` has passed."""
        d = outbox_deliveries
        earlier = outbox_deliveries.alias("earlier")
        now = self._db.now()
        due = (
            sa.select(d.c.outbox_id)
            .where(
                d.c.channel == channel,
                d.c.delivered_at.is_(None),
                d.c.next_attempt_at <= now,
                ~sa.exists().where(
                    earlier.c.channel == d.c.channel,
                    earlier.c.payout_id == d.c.payout_id,
                    earlier.c.seq < d.c.seq,
                    earlier.c.delivered_at.is_(None),
                ),
            )
            .order_by(d.c.outbox_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        async with self._db.write() as conn:
            ids = [int(i) for i in (await conn.execute(due)).scalars()]
            if not ids:
                return []
            mine = sa.and_(d.c.channel == channel, d.c.outbox_id.in_(ids))
            await conn.execute(sa.update(d).where(mine).values(next_attempt_at=now + lease))
            rows = await conn.execute(
                sa.select(outbox, d.c.attempts).join(d, d.c.outbox_id == outbox.c.id).where(mine).order_by(outbox.c.id)
            )
            return [
                OutboxDelivery(
                    outbox_id=row.id, channel=channel, attempts=row.attempts, event=to_record(PayoutEvent, row)
                )
                for row in rows
            ]

    async def delivered(self, delivery: OutboxDelivery) -> None:
        async with self._db.write() as conn:
            await conn.execute(
                sa.update(outbox_deliveries)
                .where(*_key(delivery), outbox_deliveries.c.delivered_at.is_(None))
                .values(delivered_at=self._db.now(), last_error=None)
            )

    async def failed(self, delivery: OutboxDelivery, *, error: str, retry_in: timedelta) -> None:
        """A failed attempt: counted, its error kept, tried again after `retry_in`."""
        async with self._db.write() as conn:
            await conn.execute(
                sa.update(outbox_deliveries)
                .where(*_key(delivery), outbox_deliveries.c.delivered_at.is_(None))
                .values(
                    attempts=outbox_deliveries.c.attempts + 1,
                    last_error=error[:_ERROR_CHARS],
                    next_attempt_at=self._db.now() + retry_in,
                )
            )

    async def release(self, deliveries: Sequence[OutboxDelivery], *, retry_in: timedelta = timedelta(0)) -> None:
        """Claimed but not tried (the relay stopped, or the channel went down): due again after
        `retry_in`, no attempt counted."""
        async with self._db.write() as conn:
            for delivery in deliveries:
                await conn.execute(
                    sa.update(outbox_deliveries)
                    .where(*_key(delivery), outbox_deliveries.c.delivered_at.is_(None))
                    .values(next_attempt_at=self._db.now() + retry_in)
                )

    async def backlog(self) -> list[OutboxBacklog]:
        """Per registered channel: undelivered events and when the oldest of them happened."""
        d = outbox_deliveries
        query = (
            sa.select(outbox_channels.c.name, sa.func.count(d.c.outbox_id), sa.func.min(outbox.c.occurred_at))
            .select_from(outbox_channels)
            .outerjoin(d, sa.and_(d.c.channel == outbox_channels.c.name, d.c.delivered_at.is_(None)))
            .outerjoin(outbox, outbox.c.id == d.c.outbox_id)
            .group_by(outbox_channels.c.name)
            .order_by(outbox_channels.c.name)
        )
        async with self._db.read() as conn:
            rows = (await conn.execute(query)).all()
        return [OutboxBacklog(channel=name, pending=int(pending), oldest_at=oldest) for name, pending, oldest in rows]

    async def events(self, payout_id: str) -> list[PayoutEvent]:
        """A payout's events in order (for operators and tests)."""
        query = sa.select(outbox).where(outbox.c.payout_id == payout_id).order_by(outbox.c.seq)
        async with self._db.read() as conn:
            return [to_record(PayoutEvent, row) for row in await conn.execute(query)]

    async def user_message(self, payout_id: str) -> int | None:
        """The id of the user's Telegram message about this payout, once one was sent
        (`MESSAGE_MAYBE_SENT`: one may have been sent, its id was never recorded)."""
        async with self._db.read() as conn:
            found = await conn.scalar(sa.select(payouts.c.telegram_message_id).where(payouts.c.id == payout_id))
        return None if found is None else int(found)

    async def set_user_message(self, payout_id: str, message_id: int | None) -> None:
        """Record the user's message id (`MESSAGE_MAYBE_SENT` just before a first message is sent; None when
        Telegram said it was not)."""
        async with self._db.write() as conn:
            await conn.execute(
                sa.update(payouts).where(payouts.c.id == payout_id).values(telegram_message_id=message_id)
            )

    async def prune(self, *, older_than: datetime) -> int:
        """Delete events older than `older_than` that every channel has; returns how many."""
        if older_than.tzinfo is None:
            raise ValueError("older_than must be timezone-aware")
        d = outbox_deliveries
        done = sa.select(outbox.c.id).where(
            outbox.c.occurred_at < older_than,
            ~sa.exists().where(d.c.outbox_id == outbox.c.id, d.c.delivered_at.is_(None)),
        )
        async with self._db.write() as conn:
            ids = [int(i) for i in (await conn.execute(done)).scalars()]
            for start in range(0, len(ids), 500):
                chunk = ids[start : start + 500]
                await conn.execute(sa.delete(d).where(d.c.outbox_id.in_(chunk)))
                await conn.execute(sa.delete(outbox).where(outbox.c.id.in_(chunk)))
        return len(ids)


# Telegram message ids are positive: 0 records "a first message may have been sent, its id is unknown"
# (the relay stopped between sending it and recording its id), so it is never sent twice.
MESSAGE_MAYBE_SENT = 0


def _key(delivery: OutboxDelivery) -> tuple[sa.ColumnElement[bool], ...]:
    return (outbox_deliveries.c.outbox_id == delivery.outbox_id, outbox_deliveries.c.channel == delivery.channel)
