"""`ledger.outbox`, the transactional outbox: payout events written with the status change they report, and their
delivery to each channel (payouts.events).

`record_event` runs inside the transaction that changes a payout's status, so an event exists exactly
when its change does. A relay pass claims every channel's undelivered events in one transaction
(`Outbox.claim`, safe with several relays: `FOR UPDATE SKIP LOCKED` on PostgreSQL; SQLite has one
writer), delivers them and reports them all back in one more (`Outbox.settle`). A payout's events reach
each channel in order: a later one waits while an earlier one is undelivered. The user's Telegram message
id is kept on the payout row (`MESSAGE_MAYBE_SENT`, noted by the claim before a first message goes, keeps
it from going twice).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.db import Db, Operations
from ledger.records import OutboxBacklog, OutboxClaim, OutboxDelivery, OutboxReport, PayoutRecord, to_record
from ledger.schema import outbox, outbox_channels, outbox_deliveries, payouts
from payouts.events import MESSAGE_MAYBE_SENT, PayoutEvent, PayoutEventKind
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

# Of a pass's claimed batches (by channel), the payouts whose first user message they may send.
FirstMessages = Callable[[Mapping[str, Sequence[OutboxDelivery]]], Collection[str]]


async def record_event(db: Db, conn: AsyncConnection, payout: PayoutRecord) -> None:
    """Write the event for the status `payout` just entered (if it reports one), with one delivery row
    per registered channel. Call it in the transaction of the change, under the payout row's lock.
    One statement on PostgreSQL (the deliveries insert reads the event's from a CTE), two on SQLite.

    The event id, `{payout_id}:{seq}:{kind}`, is stable for one occurrence: the same on every delivery
    attempt, unique in the outbox."""
    kind = EVENT_KINDS.get(payout.status)
    if kind is None:
        return
    params = {f"e_{name}": getattr(payout, name) for name in _FROM_PAYOUT}
    params.update(e_payout_id=payout.id, e_kind=kind.value, e_status=payout.status.value, e_occurred_at=db.now())
    event, deliveries = _event_statements(db.is_postgres)
    if deliveries is None:
        await conn.execute(event, params)
        return
    row = (await conn.execute(event, params)).one()
    await conn.execute(deliveries, {**params, "d_outbox_id": row.id, "d_seq": row.seq})


# The event's columns copied from the payout row (bound as `e_<name>`, as are `payout_id`, `kind`,
# `status` and `occurred_at`).
_FROM_PAYOUT = (
    "receipt_id", "telegram_id", "amount_kopecks", "language", "bill_id", "reason", "error_code",
    "error_description",
)  # fmt: skip


def _event_param(name: str) -> sa.BindParameter[Any]:
    return sa.bindparam(f"e_{name}", type_=outbox.c[name].type)


@functools.cache
def _event_statements(postgres: bool) -> tuple[sa.Executable, sa.Executable | None]:
    """`record_event`'s statements, built once per dialect with bound parameters: PostgreSQL's one (the
    event and its deliveries), or SQLite's two (the event, then its deliveries)."""
    o = outbox.c
    seq = sa.func.coalesce(sa.func.max(o.seq), 0) + 1  # the payout's next one (its row lock keeps it so)
    payout_id = _event_param("payout_id")
    fields: dict[sa.Column[Any], sa.ColumnElement[Any]] = {
        o.event_id: payout_id + ":" + sa.cast(seq, o.event_id.type) + ":" + _event_param("kind"),
        o.seq: seq,
        **{o[name]: _event_param(name) for name in (*_FROM_PAYOUT, "payout_id", "kind", "status", "occurred_at")},
    }
    event = (
        sa.insert(outbox)
        .from_select(list(fields), sa.select(*fields.values()).where(o.payout_id == payout_id))
        .returning(o.id, o.payout_id, o.seq)
    )
    d = outbox_deliveries.c
    columns = [d.outbox_id, d.channel, d.payout_id, d.seq, d.attempts, d.next_attempt_at]
    fixed = (sa.literal(0, d.attempts.type), _event_param("occurred_at"))
    if postgres:
        new = event.cte("new_event")
        per_channel = sa.select(new.c.id, outbox_channels.c.name, new.c.payout_id, new.c.seq, *fixed).select_from(
            new.join(outbox_channels, sa.true())
        )
        return sa.insert(outbox_deliveries).from_select(columns, per_channel), None
    deliveries = sa.insert(outbox_deliveries).from_select(
        columns,
        sa.select(
            sa.bindparam("d_outbox_id", type_=o.id.type),
            outbox_channels.c.name,
            payout_id,
            sa.bindparam("d_seq", type_=o.seq.type),
            *fixed,
        ),
    )
    return event, deliveries


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

    async def claim(
        self,
        channels: Sequence[str],
        *,
        limit: int,
        lease: timedelta,
        first_messages: FirstMessages | None = None,
    ) -> OutboxClaim:
        """A relay pass's claim, in one transaction: for each channel up to `limit` due events, oldest first,
        at most one per payout (its earliest undelivered one), each with its payout's Telegram message id,
        leased (no other relay gets them before `lease` has passed). Then the first-message note: of the
        payouts `first_messages` names from the batches (pure Python: it runs inside the transaction),
        those with no message recorded are noted MESSAGE_MAYBE_SENT, committed before any message is sent.
        Per channel one statement on PostgreSQL, two on SQLite (one writer at a time); one for the note."""
        until = self._db.now() + lease
        async with self._db.write() as conn:
            batches = {channel: await _claim_due(self._db, conn, channel, limit, until) for channel in channels}
            noted = await _note_first_messages(conn, first_messages(batches)) if first_messages else frozenset()
        return OutboxClaim(batches, noted)

    async def settle(self, report: OutboxReport) -> None:
        """Record what a relay made of its claimed batches (any channels), in one transaction: the events
        delivered, the failed attempts (counted, each error kept, tried again after its pause), the events
        handed back untried (due after theirs), and the user's Telegram message ids. Reports about
        delivered events change nothing."""
        d = outbox_deliveries
        now = self._db.now()
        undelivered = d.c.delivered_at.is_(None)
        async with self._db.write() as conn:
            for channel, ids in _by_channel(report.delivered).items():
                await conn.execute(
                    sa.update(d)
                    .where(d.c.channel == channel, d.c.outbox_id.in_(ids), undelivered)
                    .values(delivered_at=now, last_error=None)
                )
            if report.failed:
                await conn.execute(
                    _reschedule(attempts=d.c.attempts + 1, last_error=sa.bindparam("error")),
                    [_row(f.delivery, error=f.error[:_ERROR_CHARS], next=now + f.retry_in) for f in report.failed],
                )
            if report.released:
                await conn.execute(
                    _reschedule(),
                    [_row(r.delivery, next=now + r.retry_in) for r in report.released],
                )
            sent = sorted((pid, mid) for pid, mid in report.user_messages.items() if mid is not None)
            if sent:
                await conn.execute(
                    sa.update(payouts)
                    .where(payouts.c.id == sa.bindparam("m_payout"))
                    .values(telegram_message_id=sa.bindparam("m_message")),
                    [{"m_payout": pid, "m_message": mid} for pid, mid in sent],
                )
            unsent = sorted(pid for pid, mid in report.user_messages.items() if mid is None)
            if unsent:
                await conn.execute(
                    sa.update(payouts)
                    .where(payouts.c.id.in_(unsent), payouts.c.telegram_message_id == MESSAGE_MAYBE_SENT)
                    .values(telegram_message_id=None)
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


async def _claim_due(db: Db, conn: AsyncConnection, channel: str, limit: int, until: datetime) -> list[OutboxDelivery]:
    """Up to `limit` events due for `channel`, leased until `until` (`Outbox.claim`)."""
    d = outbox_deliveries
    earlier = outbox_deliveries.alias("earlier")
    due = (
        d.c.channel == channel,
        d.c.delivered_at.is_(None),
        d.c.next_attempt_at <= db.now(),
        ~sa.exists().where(
            earlier.c.channel == d.c.channel,
            earlier.c.payout_id == d.c.payout_id,
            earlier.c.seq < d.c.seq,
            earlier.c.delivered_at.is_(None),
        ),
    )
    columns = (*outbox.c, d.c.attempts, payouts.c.telegram_message_id)
    of_payout = payouts.c.id == outbox.c.payout_id
    if db.is_postgres:
        # Lock the due rows (skipping another claimer's), lease them and read them back at once. The CTE is
        # MATERIALIZED so its LIMIT and row locks run once, whatever plan the join gets.
        picked = (
            sa.select(d.c.outbox_id)
            .where(*due)
            .order_by(d.c.outbox_id)
            .limit(limit)
            .with_for_update(skip_locked=True)
            .cte("picked")
            .prefix_with("MATERIALIZED")
        )
        rows = list(
            await conn.execute(
                sa.update(d)
                .where(
                    d.c.channel == channel, d.c.outbox_id == picked.c.outbox_id, outbox.c.id == d.c.outbox_id, of_payout
                )
                .values(next_attempt_at=until)
                .returning(*columns)
            )
        )
        rows.sort(key=lambda row: int(row.id))
    else:
        rows = list(
            await conn.execute(
                sa.select(*columns)
                .select_from(d.join(outbox, outbox.c.id == d.c.outbox_id).join(payouts, of_payout))
                .where(*due)
                .order_by(d.c.outbox_id)
                .limit(limit)
            )
        )
        if rows:
            mine = (d.c.channel == channel, d.c.outbox_id.in_([row.id for row in rows]))
            await conn.execute(sa.update(d).where(*mine).values(next_attempt_at=until))
    return [
        OutboxDelivery(
            outbox_id=row.id,
            channel=channel,
            attempts=row.attempts,
            event=to_record(PayoutEvent, row),
            telegram_message_id=row.telegram_message_id,
        )
        for row in rows
    ]


async def _note_first_messages(conn: AsyncConnection, payout_ids: Collection[str]) -> frozenset[str]:
    """Note MESSAGE_MAYBE_SENT for these payouts where no message is recorded; returns the ones noted."""
    if not payout_ids:
        return frozenset()
    noted = await conn.execute(
        sa.update(payouts)
        .where(payouts.c.id.in_(sorted(payout_ids)), payouts.c.telegram_message_id.is_(None))
        .values(telegram_message_id=MESSAGE_MAYBE_SENT)
        .returning(payouts.c.id)
    )
    return frozenset(str(i) for i in noted.scalars())


def _reschedule(**values: object) -> sa.Update:
    """`settle`'s UPDATE of one still undelivered delivery (executemany, with `_row`'s parameters): due
    again at `next`, with `values` besides."""
    d = outbox_deliveries.c
    return (
        sa.update(outbox_deliveries)
        .where(
            d.outbox_id == sa.bindparam("d_outbox"), d.channel == sa.bindparam("d_channel"), d.delivered_at.is_(None)
        )
        .values(next_attempt_at=sa.bindparam("next"), **values)
    )


def _row(delivery: OutboxDelivery, **params: object) -> dict[str, object]:
    return {"d_outbox": delivery.outbox_id, "d_channel": delivery.channel, **params}


def _by_channel(deliveries: Sequence[OutboxDelivery]) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for delivery in deliveries:
        found.setdefault(delivery.channel, []).append(delivery.outbox_id)
    return found
