"""The reservation's rules, inside the one transaction of `Payouts.reserve`: the same payout asking again
gets its stored answer, whatever the time now; otherwise the receipt must be eligible (its acceptance
time against the time the workflow carries in) and the payout row is inserted under its unique receipt
(and fiscal key), the per-user and daily-budget limits checked against a locked per-day row. A refusal
is a REJECTED row with its reason, so it leaves a trace and the shopper can be told (internal)."""

from __future__ import annotations

import functools
from datetime import UTC

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.db import Db
from ledger.errors import LedgerError
from ledger.outbox import record_event
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
    statements = _statements(db.is_postgres)
    reserved_kopecks = int(await conn.scalar(statements.lock_day, {"r_day": req.business_day}) or 0)
    # The receipt's row (a repeat, or a concurrent reserve committed while we waited for the lock) and a
    # payout id taken by another receipt, in one read after the lock (READ COMMITTED: each statement sees
    # the latest commits).
    taken = await conn.execute(statements.taken, {"r_receipt": req.receipt_id, "r_id": req.payout_id})
    clashes = sorted((to_record(PayoutRecord, row) for row in taken),
                     key=lambda clash: clash.receipt_id != req.receipt_id)  # fmt: skip
    if clashes and clashes[0].receipt_id == req.receipt_id:
        return _answer_existing(clashes[0], req)
    if clashes:
        raise LedgerError(f"payout id {req.payout_id!r} already belongs to receipt {clashes[0].receipt_id!r}")

    reason = ineligible(req.eligibility) or await _rejection(statements, conn, req, reserved_kopecks)
    status = PayoutStatus.REJECTED if reason else PayoutStatus.RESERVED
    now = db.now()
    row = {
        "id": req.payout_id,
        "receipt_id": req.receipt_id,
        # the key stays with the receipt that used it first (an ineligible receipt never used it), so the
        # unique index holds
        "fiscal_key": None if reason in _KEY_NOT_USED else (req.fiscal_key or None),
        "user_key": req.user_key,
        "masked_msisdn": req.masked_msisdn,
        "telegram_id": req.telegram_id,
        "language": req.language,
        "amount_kopecks": req.amount_kopecks,
        "currency": req.currency,
        "payee_id": req.payee_id,
        "status": status.value,
        "reason": reason,
        "owner": req.owner,
        "business_day": req.business_day,
        "created_at": now,
        "updated_at": now,
    }
    inserted = (await conn.execute(statements.insert, {f"n_{name}": value for name, value in row.items()})).one()
    # the event: "processing" for a reservation, the refusal for a rejection (the history row: `ledger.history`)
    await record_event(db, conn, to_record(PayoutRecord, inserted))
    if reason is None:
        await conn.execute(statements.count_in, {"r_day": req.business_day, "r_amount": req.amount_kopecks})
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


async def _rejection(
    statements: _Statements, conn: AsyncConnection, req: ReserveRequest, reserved_kopecks: int
) -> RejectionReason | None:
    if req.fiscal_key:
        used = await conn.scalar(statements.fiscal_key_used, {"r_key": req.fiscal_key})
        if used is not None:
            return RejectionReason.DUPLICATE_FISCAL_KEY
    if req.amount_kopecks > req.max_payout_kopecks:
        return RejectionReason.AMOUNT_OVER_MAX
    user_count = await conn.scalar(statements.user_count, {"r_user": req.user_key, "r_day": req.business_day})
    if int(user_count or 0) >= req.user_daily_limit:
        return RejectionReason.USER_DAILY_LIMIT
    if reserved_kopecks + req.amount_kopecks > req.daily_budget_kopecks:
        return RejectionReason.DAILY_BUDGET
    return None


# The columns a reservation writes (the others keep their defaults).
_NEW_ROW = (
    "id", "receipt_id", "fiscal_key", "user_key", "masked_msisdn", "telegram_id", "language", "amount_kopecks",
    "currency", "payee_id", "status", "reason", "owner", "business_day", "created_at", "updated_at",
)  # fmt: skip


class _Statements:
    """The reservation's statements, built once per dialect with bound parameters (`r_*`; the new row's
    columns as `n_<column>`)."""

    def __init__(self, postgres: bool) -> None:
        p, totals = payouts.c, daily_totals.c
        day = sa.bindparam("r_day", type_=totals.business_day.type)
        insert = postgresql.insert if postgres else sqlite.insert
        # Create the day's row if needed and lock it, returning the kopecks reserved so far: an upsert that
        # touches the row locks it (PostgreSQL: every reserve of the day serializes on it; SQLite: the
        # transaction began IMMEDIATE, so this connection is the only writer already).
        self.lock_day = (
            insert(daily_totals)
            .values(business_day=day, reserved_kopecks=0, reserved_count=0)
            .on_conflict_do_update(
                index_elements=[totals.business_day], set_={"reserved_kopecks": totals.reserved_kopecks}
            )
            .returning(totals.reserved_kopecks)
        )
        receipt = p.receipt_id == sa.bindparam("r_receipt", type_=p.receipt_id.type)
        self.taken = sa.select(payouts).where(sa.or_(receipt, p.id == sa.bindparam("r_id", type_=p.id.type)))
        self.fiscal_key_used = sa.select(p.id).where(p.fiscal_key == sa.bindparam("r_key", type_=p.fiscal_key.type))
        user = p.user_key == sa.bindparam("r_user", type_=p.user_key.type)
        self.user_count = sa.select(sa.func.count()).where(user, p.business_day == day, p.status.in_(_COUNTED))
        new_row = {name: sa.bindparam(f"n_{name}", type_=p[name].type) for name in _NEW_ROW}
        self.insert = sa.insert(payouts).values({**new_row, "row_version": 1}).returning(*p)
        amount = sa.bindparam("r_amount", type_=totals.reserved_kopecks.type)
        self.count_in = (
            sa.update(daily_totals)
            .where(totals.business_day == day)
            .values(reserved_kopecks=totals.reserved_kopecks + amount, reserved_count=totals.reserved_count + 1)
        )


@functools.cache
def _statements(postgres: bool) -> _Statements:
    return _Statements(postgres)
