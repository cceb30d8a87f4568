"""The reservation's rules, inside the one transaction of `Payouts.reserve`: the same payout asking again
gets its stored answer, whatever the time now; otherwise the receipt must be eligible (its acceptance
time against the time the workflow carries in) and the payout row is inserted under its unique receipt
(and fiscal key), the per-user and daily-budget limits checked against a locked per-day row. A refusal
is a REJECTED row with its reason, so it leaves a trace and the shopper can be told (internal)."""

from __future__ import annotations

from datetime import UTC, date

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.db import Db
from ledger.errors import LedgerError
from ledger.outbox import record_event
from ledger.payout_rows import payout_by_receipt
from ledger.records import Eligibility, PayoutRecord, ReserveRequest, ReserveResult, to_record
from ledger.schema import daily_totals, payouts
from payouts.rejection import RejectionReason
from payouts.status import COUNTS_AGAINST_LIMITS, PayoutStatus

# A unique violation means a concurrent transaction inserted the same receipt (or fiscal key) first;
# the next pass sees its row. Two passes suffice; the third is slack.
PASSES = 3
_COUNTED = sorted(s.value for s in COUNTS_AGAINST_LIMITS)
_KEY_NOT_USED = frozenset(
    {RejectionReason.DUPLICATE_FISCAL_KEY, RejectionReason.ACCEPTED_IN_FUTURE, RejectionReason.RECEIPT_TOO_OLD}
)


def validate(req: ReserveRequest) -> None:
    if isinstance(req.amount_kopecks, bool) or not isinstance(req.amount_kopecks, int):
        raise TypeError("amount_kopecks must be an int (kopecks)")
    if req.amount_kopecks <= 0:
        raise ValueError("amount_kopecks must be positive")
    if min(req.user_daily_limit, req.daily_budget_kopecks, req.max_payout_kopecks) < 0:
        raise ValueError("limits must not be negative")
    if not req.payout_id or not req.receipt_id or not req.owner:
        raise ValueError("payout_id, receipt_id and owner are required")
    if req.language not in ("uk", "en"):
        raise ValueError("language must be uk or en")


def _answer_existing(row: PayoutRecord, req: ReserveRequest) -> ReserveResult:
    # The same payout asking again (an activity retry, a reset or continued-as-new run of its workflow,
    # or a row written when the owner was a run id): the stored answer, with the row's status now.
    if row.owner == req.owner or row.id == req.payout_id:
        return ReserveResult(
            accepted=row.status != PayoutStatus.REJECTED,
            payout_id=row.id,
            status=row.status,
            reason=row.reason,
            replay=True,
        )
    # Another run holds this receipt: this request is refused; the stored row is untouched.
    return ReserveResult(
        accepted=False,
        payout_id=row.id,
        status=PayoutStatus.REJECTED,
        reason=RejectionReason.DUPLICATE_RECEIPT,
        replay=False,
    )


async def reserve_once(db: Db, conn: AsyncConnection, req: ReserveRequest) -> ReserveResult:
    """One pass (a unique violation, raised, means another transaction reserved the receipt first)."""
    existing = await payout_by_receipt(conn, req.receipt_id)
    if existing is not None:
        return _answer_existing(existing, req)
    reserved_kopecks = await _lock_day(db, conn, req.business_day)
    # A concurrent reserve of the same receipt (or payout id) may have committed while we waited for the
    # lock: one read sees both (READ COMMITTED: each statement sees the latest commits).
    taken = sa.select(payouts).where(sa.or_(payouts.c.receipt_id == req.receipt_id, payouts.c.id == req.payout_id))
    clashes = sorted((to_record(PayoutRecord, row) for row in await conn.execute(taken)),
                     key=lambda clash: clash.receipt_id != req.receipt_id)  # fmt: skip
    if clashes and clashes[0].receipt_id == req.receipt_id:
        return _answer_existing(clashes[0], req)
    if clashes:
        raise LedgerError(f"payout id {req.payout_id!r} already belongs to receipt {clashes[0].receipt_id!r}")

    reason = ineligible(req.eligibility) or await _rejection(conn, req, reserved_kopecks)
    status = PayoutStatus.REJECTED if reason else PayoutStatus.RESERVED
    now = db.now()
    row = await conn.execute(
        sa.insert(payouts).values(
            id=req.payout_id,
            receipt_id=req.receipt_id,
            # the key stays with the receipt that used it first (an ineligible receipt never used it), so
            # the unique index holds
            fiscal_key=None if reason in _KEY_NOT_USED else (req.fiscal_key or None),
            user_key=req.user_key,
            masked_msisdn=req.masked_msisdn,
            telegram_id=req.telegram_id,
            language=req.language,
            amount_kopecks=req.amount_kopecks,
            currency=req.currency,
            payee_id=req.payee_id,
            status=status.value,
            reason=reason,
            owner=req.owner,
            business_day=req.business_day,
            created_at=now,
            updated_at=now,
            row_version=1,
        ).returning(*payouts.c)
    )
    # the history row, and the event: "processing" for a reservation, the refusal for a rejection
    await record_event(db, conn, to_record(PayoutRecord, row.one()))  # its history row: `ledger.history`
    if reason is None:
        await conn.execute(
            sa.update(daily_totals)
            .where(daily_totals.c.business_day == req.business_day)
            .values(
                reserved_kopecks=daily_totals.c.reserved_kopecks + req.amount_kopecks,
                reserved_count=daily_totals.c.reserved_count + 1,
            )
        )
    return ReserveResult(accepted=reason is None, payout_id=req.payout_id, status=status, reason=reason, replay=False)


def ineligible(rule: Eligibility | None) -> RejectionReason | None:
    """Why the receipt is not eligible at the time the workflow carries in, or None."""
    if rule is None:
        return None
    accepted = rule.accepted_at if rule.accepted_at.tzinfo else rule.accepted_at.replace(tzinfo=UTC)
    if accepted > rule.decided_at + rule.clock_skew:
        return RejectionReason.ACCEPTED_IN_FUTURE
    if rule.decided_at - accepted > rule.window:
        return RejectionReason.RECEIPT_TOO_OLD
    return None


async def _lock_day(db: Db, conn: AsyncConnection, day: date) -> int:
    """Create the day's row if needed and lock it; returns the kopecks reserved so far. One statement: an
    upsert that touches the row locks it (PostgreSQL: every reserve of the day serializes on it; SQLite:
    the transaction began IMMEDIATE, so this connection is the only writer already)."""
    dialect_insert = postgresql.insert if db.is_postgres else sqlite.insert
    insert = dialect_insert(daily_totals).values(business_day=day, reserved_kopecks=0, reserved_count=0)
    reserved = await conn.scalar(
        insert.on_conflict_do_update(
            index_elements=[daily_totals.c.business_day],
            set_={"reserved_kopecks": daily_totals.c.reserved_kopecks},
        ).returning(daily_totals.c.reserved_kopecks)
    )
    return int(reserved or 0)


async def _rejection(conn: AsyncConnection, req: ReserveRequest, reserved_kopecks: int) -> RejectionReason | None:
    if req.fiscal_key:
        used = await conn.scalar(sa.select(payouts.c.id).where(payouts.c.fiscal_key == req.fiscal_key))
        if used is not None:
            return RejectionReason.DUPLICATE_FISCAL_KEY
    if req.amount_kopecks > req.max_payout_kopecks:
        return RejectionReason.AMOUNT_OVER_MAX
    user_count = await conn.scalar(
        sa.select(sa.func.count())
        .select_from(payouts)
        .where(
            payouts.c.user_key == req.user_key,
            payouts.c.business_day == req.business_day,
            payouts.c.status.in_(_COUNTED),
        )
    )
    if int(user_count or 0) >= req.user_daily_limit:
        return RejectionReason.USER_DAILY_LIMIT
    if reserved_kopecks + req.amount_kopecks > req.daily_budget_kopecks:
        return RejectionReason.DAILY_BUDGET
    return None
