"""`ledger.attempts`: the bill-attempt write-ahead log and the new-bill rule.

`prepared` is written before each bills.create send, then how it ended (`answered`, `not_sent`,
`unknown`). The new-bill rule lives here, in the transaction that writes `prepared` (the payout row
locked, so two senders serialize): no new bill while any earlier attempt of any round may hold
money — no recorded ending, an unknown outcome, or a bill without a final non-paid callback —
unless an operator confirmed that attempt's bill holds none. A bill that a stored callback says was
paid blocks every new bill, confirmed or not.

A confirmation names the evidence it answered (`evidence_of`: the attempt's state, its bill id, the
callbacks stored for that bill). It covers the attempt only while that is still all the ledger knows:
a late answer, a bill id learnt from an echo or a new callback voids it, and the attempt blocks again.

The status moves that always accompany an attempt happen in its transactions: `begin` moves the
payout to BILL_REQUESTED, `finish` with a bill id to AWAITING_CALLBACK (not a late answer: by then the
payout has gone to a person, who may already have asked for the next round).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger.archive import archive_exchange
from ledger.callbacks import route_bill, route_lock, route_stored_callbacks
from ledger.db import Db, Operations
from ledger.errors import IllegalTransition, LedgerError, NewBillRefused
from ledger.payout_rows import change_status, require_payout
from ledger.records import (
    AttemptEnding,
    AttemptRecord,
    AttemptStart,
    AttemptState,
    ExchangeEntry,
    OpenBill,
    PayoutRecord,
    to_record,
)
from ledger.schema import bill_attempts, callbacks
from payouts.status import PayoutStatus
from payouts.verdicts import BillVerdict, Verdict, bill_standing

FINAL_STATES: frozenset[str] = frozenset({"answered", "not_sent", "unknown"})
# Where a new bill may start: a new payout, the end of a back-off, or a round already requested (the
# workflow moved it there itself, or this is the next attempt of the round).
_BEGIN_FROM = frozenset({PayoutStatus.RESERVED, PayoutStatus.RETRY_SCHEDULED, PayoutStatus.BILL_REQUESTED})


class Attempts(Operations):
    async def begin(self, payout_id: str, round_no: int) -> AttemptRecord:
        """Write `prepared` for a new bills.create send and move the payout to BILL_REQUESTED (from RESERVED
        or RETRY_SCHEDULED), or raise NewBillRefused (the new-bill rule) or IllegalTransition (any other
        status: no bill for a payout that is waiting for a callback, a person, or is settled)."""
        async with self._db.write() as conn:
            payout = await require_payout(conn, payout_id, lock=True)  # serializes senders and attempt numbering
            return await _begin(self._db, conn, payout, round_no, await attempts_of(conn, payout_id))

    async def start(self, payout_id: str, round_no: int) -> AttemptStart:
        """`begin`, unless an earlier attempt of this round may have reached Portmone (it holds a bill, or
        its outcome is not known): then nothing is written and those attempts come back, so a retried
        round adopts its bill or goes to a person, never sends again. One transaction."""
        async with self._db.write() as conn:
            payout = await require_payout(conn, payout_id, lock=True)
            attempts = await attempts_of(conn, payout_id)
            earlier = [a for a in attempts if a.round_no == round_no]
            if any(may_have_reached_portmone(a) for a in earlier):
                return AttemptStart(attempt=None, earlier=earlier)
            return AttemptStart(attempt=await _begin(self._db, conn, payout, round_no, attempts), earlier=earlier)

    async def finish(
        self,
        attempt_id: int,
        state: AttemptState,
        *,
        bill_id: str | None = None,
        error_code: str | None = None,
        detail: str | None = None,
    ) -> AttemptRecord:
        """Record how an attempt ended. An answer that comes after the attempt was marked `unknown` (a
        retry gave up on a still-running call) is kept: Portmone's answer is better evidence than our
        guess, and its bill id is the route for that bill's callbacks.

        A bill id answered for the payout's latest attempt moves it from BILL_REQUESTED to
        AWAITING_CALLBACK in the same transaction (a payout that moved on meanwhile, e.g. paid by an early
        callback, stays)."""
        async with self._db.write() as conn:
            attempt, _, _ = await _finish(self._db, conn, attempt_id, state, bill_id, error_code, detail)
            return attempt

    async def end(
        self,
        attempt_id: int,
        state: AttemptState,
        *,
        bill_id: str | None = None,
        error_code: str | None = None,
        detail: str | None = None,
        exchange: ExchangeEntry | None = None,
    ) -> AttemptEnding:
        """Everything a send's ending writes, in one transaction: `finish`, the exchange archived (once:
        a repeated ending writes nothing), and for an answered bill its route as `Callbacks.set_bill_id`
        records it, with the bill's callbacks that came first."""
        async with self._db.write() as conn:
            attempt, new, payout = await _finish(self._db, conn, attempt_id, state, bill_id, error_code, detail)
            if new and exchange is not None:
                await archive_exchange(self._db, conn, exchange)
            if not bill_id or state != "answered":
                return AttemptEnding(attempt=attempt, early_callbacks=[])
            early = await route_bill(self._db, conn, attempt.payout_id, bill_id, routed=payout)
            return AttemptEnding(attempt=attempt, early_callbacks=early)

    async def for_payout(self, payout_id: str, round_no: int | None = None) -> list[AttemptRecord]:
        """A payout's attempts in order (of one round when given)."""
        async with self._db.read() as conn:
            return await attempts_of(conn, payout_id, round_no)

    async def open_bills(self, payout_id: str) -> list[OpenBill]:
        """The earlier bills that stop a new one (the new-bill rule's evidence), for operators and escalations."""
        async with self._db.read() as conn:
            return await find_open_bills(conn, payout_id)


async def attempts_of(conn: AsyncConnection, payout_id: str, round_no: int | None = None) -> list[AttemptRecord]:
    """A payout's attempts in order (of one round when given), inside a transaction."""
    rows = await conn.execute(_attempts_query(round_no is not None), {"a_payout": payout_id, "a_round": round_no})
    return [to_record(AttemptRecord, row) for row in rows]


@functools.cache
def _attempts_query(of_round: bool) -> sa.Select[Any]:
    """A payout's attempts (`a_payout`), of one round (`a_round`) or all, built once."""
    a = bill_attempts.c
    query = sa.select(bill_attempts).where(a.payout_id == sa.bindparam("a_payout", type_=a.payout_id.type))
    if of_round:
        query = query.where(a.round_no == sa.bindparam("a_round", type_=a.round_no.type))
    return query.order_by(a.attempt_no)


async def _callbacks_by_bill(conn: AsyncConnection, bill_ids: Sequence[str]) -> dict[str, list[tuple[int, Verdict]]]:
    """Every stored callback (id, verdict) per bill id, routed or not: a stored callback is evidence."""
    found: dict[str, list[tuple[int, Verdict]]] = defaultdict(list)
    if bill_ids:
        query = (
            sa.select(callbacks.c.bill_id, callbacks.c.id, callbacks.c.verdict)
            .where(callbacks.c.bill_id.in_(list(bill_ids)))
            .order_by(callbacks.c.id)
        )
        for bill_id, callback_id, verdict in await conn.execute(query):
            found[str(bill_id)].append((int(callback_id), Verdict(verdict) if verdict else Verdict.UNKNOWN))
    return found


def evidence_of(attempt: AttemptRecord, stored: Sequence[tuple[int, Verdict]]) -> str:
    """What the ledger knows of an attempt: how it ended, its bill id, and the callbacks stored for that
    bill (how many, the latest). Any change here is new evidence."""
    latest = max((callback_id for callback_id, _ in stored), default=0)
    return f"{attempt.state}:{attempt.bill_id or '-'}:{len(stored)}:{latest}"


async def _evidence(
    conn: AsyncConnection, payout_id: str, attempts: Sequence[AttemptRecord] | None = None
) -> list[tuple[AttemptRecord, list[tuple[int, Verdict]]]]:
    attempts = await attempts_of(conn, payout_id) if attempts is None else attempts
    by_bill = await _callbacks_by_bill(conn, [a.bill_id for a in attempts if a.bill_id])
    return [(a, by_bill.get(a.bill_id, []) if a.bill_id else []) for a in attempts]


async def find_open_bills(
    conn: AsyncConnection, payout_id: str, attempts: Sequence[AttemptRecord] | None = None
) -> list[OpenBill]:
    """The attempts of this payout whose bill may hold money (the new-bill rule's evidence); `attempts`:
    all of the payout's, when this transaction has read them already."""
    found: list[OpenBill] = []
    for attempt, stored in await _evidence(conn, payout_id, attempts):
        evidence = evidence_of(attempt, stored)
        confirmed = attempt.confirmed_by is not None and attempt.confirmed_evidence == evidence
        verdict: BillVerdict
        if attempt.bill_id:
            standing = bill_standing(v for _, v in stored)
            if standing == "dead" or (standing == "live" and confirmed):
                continue
            verdict = "paid" if standing == "paid" else ("unknown" if attempt.state == "unknown" else "live")
        elif attempt.state in ("prepared", "unknown") and not confirmed:
            verdict = "no_ending" if attempt.state == "prepared" else "unknown"
        else:
            continue  # refused, not sent, or confirmed to have made no bill
        found.append(
            OpenBill(
                attempt_id=attempt.id,
                round_no=attempt.round_no,
                attempt_no=attempt.attempt_no,
                bill_id=attempt.bill_id,
                verdict=verdict,
                evidence=evidence,
                voided=attempt.confirmed_by is not None and not confirmed,
            )
        )
    return found


async def confirm_no_money(
    conn: AsyncConnection, payout_id: str, confirms: Sequence[tuple[int, str]], action_id: int
) -> int:
    """Mark these attempts of the payout as confirmed by an operator to hold no money, each only when the
    ledger still knows what the operator was shown (`evidence`); returns how many were confirmed."""
    if not confirms:
        return 0
    current = {attempt.id: evidence_of(attempt, stored) for attempt, stored in await _evidence(conn, payout_id)}
    confirmed = 0
    for attempt_id, evidence in confirms:
        if current.get(attempt_id) != evidence:
            continue  # new evidence since the operator looked: this confirmation does not cover it
        await conn.execute(
            sa.update(bill_attempts)
            .where(bill_attempts.c.payout_id == payout_id, bill_attempts.c.id == attempt_id)
            .values(confirmed_by=action_id, confirmed_evidence=evidence)
        )
        confirmed += 1
    return confirmed


def may_have_reached_portmone(attempt: AttemptRecord) -> bool:
    """An attempt whose bills.create may have made a bill: it holds one, or its outcome is not known."""
    return bool(attempt.bill_id) or attempt.state in ("prepared", "unknown")


async def _begin(
    db: Db, conn: AsyncConnection, payout: PayoutRecord, round_no: int, attempts: Sequence[AttemptRecord]
) -> AttemptRecord:
    """`Attempts.begin` for a payout row this transaction has locked, whose attempts it has read."""
    if round_no < 1:
        raise ValueError("round_no starts at 1")
    payout_id = payout.id
    if payout.status not in _BEGIN_FROM:
        raise IllegalTransition(payout_id, payout.status, PayoutStatus.BILL_REQUESTED)
    blocking = await find_open_bills(conn, payout_id, attempts)
    if blocking:
        raise NewBillRefused(payout_id, blocking)
    last = max((a.attempt_no for a in attempts), default=0)
    row = (
        await conn.execute(
            sa.insert(bill_attempts)
            .values(
                payout_id=payout_id,
                round_no=round_no,
                attempt_no=last + 1,
                state="prepared",
                prepared_at=db.now(),
            )
            .returning(*bill_attempts.c)
        )
    ).one()
    await change_status(db, conn, payout, PayoutStatus.BILL_REQUESTED)  # a no-op when already there
    return to_record(AttemptRecord, row)


async def _finish(
    db: Db,
    conn: AsyncConnection,
    attempt_id: int,
    state: AttemptState,
    bill_id: str | None,
    error_code: str | None,
    detail: str | None,
) -> tuple[AttemptRecord, bool, PayoutRecord]:
    """`Attempts.finish` inside a transaction; also says whether this call recorded the ending (False: a
    repeat found it recorded already), and gives the payout row as it left it (locked, its bill's stored
    callbacks routed to it when `bill_id` is given)."""
    if state not in FINAL_STATES:
        raise ValueError(f"an attempt finishes as one of {sorted(FINAL_STATES)}, not {state!r}")
    payout_id = await conn.scalar(_FINISH.payout_of, {"a_id": attempt_id})
    if payout_id is None:
        raise LedgerError(f"no bill attempt {attempt_id}")
    if bill_id:  # the bill is this payout's: its route row first, before the row locks, as every router
        await route_lock(db, conn, bill_id, str(payout_id))
    payout = await require_payout(conn, str(payout_id), lock=True)  # the payout row, then the attempt's
    locked = (await conn.execute(_FINISH.locked, {"a_id": attempt_id})).one()
    current = to_record(AttemptRecord, locked)
    if current.state == state and current.bill_id == (bill_id or current.bill_id):
        return current, False, payout  # a retried finish: already recorded
    late_answer = current.state == "unknown" and state == "answered"
    if current.state != "prepared" and not late_answer:
        raise LedgerError(f"bill attempt {attempt_id} already finished as {current.state!r}, not {state!r}")
    if late_answer:
        earlier = current.detail or "no detail"
        detail = f"late answer after the attempt was marked unknown ({earlier}); {detail or ''}"
    elif current.detail:
        detail = f"{detail}; {current.detail}" if detail else current.detail  # e.g. a bill id learnt by echo
    ending = {
        "a_id": attempt_id,
        "a_state": state,
        "a_bill": bill_id or current.bill_id,  # a bill id learnt meanwhile (by echo) is kept
        "a_error": error_code,
        "a_detail": detail,
        "a_finished": db.now(),
    }
    row = (await conn.execute(_FINISH.ending, ending)).one()
    if bill_id:
        await route_stored_callbacks(db, conn, bill_id, current.payout_id)
        moves = state == "answered" and not late_answer and payout.status == PayoutStatus.BILL_REQUESTED
        if moves and locked.latest_attempt_no == current.attempt_no:  # only the latest attempt moves the status
            payout = await change_status(db, conn, payout, PayoutStatus.AWAITING_CALLBACK, bill_id=bill_id)
    return to_record(AttemptRecord, row), True, payout


class _FinishStatements:
    """`_finish`'s statements, built once (bound: `a_id`, and the ending's `a_*`)."""

    def __init__(self) -> None:
        a = bill_attempts.c
        chosen = a.id == sa.bindparam("a_id", type_=a.id.type)
        self.payout_of = sa.select(a.payout_id).where(chosen)
        later = bill_attempts.alias("later")
        latest = sa.select(sa.func.max(later.c.attempt_no)).where(later.c.payout_id == a.payout_id).scalar_subquery()
        # the attempt, locked, with the payout's latest attempt number (only the latest moves the status)
        self.locked = (
            sa.select(bill_attempts, latest.label("latest_attempt_no")).where(chosen).with_for_update(of=bill_attempts)
        )
        ending = {
            "state": "a_state", "bill_id": "a_bill", "error_code": "a_error", "detail": "a_detail",
            "finished_at": "a_finished",
        }  # fmt: skip
        values = {column: sa.bindparam(param, type_=a[column].type) for column, param in ending.items()}
        self.ending = sa.update(bill_attempts).where(chosen).values(values).returning(*bill_attempts.c)


_FINISH = _FinishStatements()
