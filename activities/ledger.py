"""Ledger activities: the gate and reservation, status transitions and escalations, the operator
audit trail, and the reads the escalation ladder needs.

An outage of the ledger delays a payout and never fails it: `LedgerUnavailable` is retried by
Temporal without a deadline (workflows.payout_calls), counted here so a long outage alerts.

Payout outcomes (`runtime.metrics.record_payout_outcome`) are counted here, where the ledger has
just recorded them: a rejection, a terminal status, an escalation to manual review.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from enum import StrEnum

from sqlalchemy import exc as sa_exc
from temporalio import activity
from temporalio.exceptions import ApplicationError

from ledger import CallbackRecord, Eligibility, IllegalTransition, Ledger, LedgerUnavailable, OpenBill, ReserveRequest
from payouts import failures
from payouts.calendar import business_day
from payouts.models import (
    CallbackSignal,
    EscalateInput,
    EscalateOutput,
    LedgerStateOutput,
    OpenBillView,
    OperatorActionInput,
    OperatorActionOutput,
    ReserveInput,
    ReserveOutput,
    TransitionInput,
)
from payouts.names import ActivityName
from payouts.status import PayoutStatus
from payouts.verdicts import Verdict, bill_standing
from runtime import metrics
from runtime.settings import LedgerSettings

_log = logging.getLogger("payouts.activities.ledger")


class LedgerStep(StrEnum):
    """The ledger activities' names in `payout_ledger_unavailable_total{activity}` (created at 0)."""

    RESERVE = "reserve"
    TRANSITION = "transition"
    ESCALATE = "escalate"
    UNDELIVERED_CALLBACKS = "undelivered_callbacks"
    STATE = "state"
    RECORD_OPERATOR_ACTION = "record_operator_action"
    CREATE_BILL = "create_bill"  # the attempt log of activities.bill


metrics.start_at_zero(metrics.LEDGER_UNAVAILABLE, metrics.every(activity=LedgerStep))


@asynccontextmanager
async def _outages_counted(name: LedgerStep) -> AsyncIterator[None]:
    try:
        yield
    except LedgerUnavailable as exc:
        metrics.record_ledger_unavailable(name)
        _log.warning("%s: ledger unavailable (attempt %d, retried): %s", name, activity.info().attempt, exc)
        raise


def open_bill_view(bill: OpenBill) -> OpenBillView:
    """The ledger's evidence as the workflow carries it (and an operator's confirmation names it)."""
    return OpenBillView(attempt_id=bill.attempt_id, bill_id=bill.bill_id, verdict=bill.verdict,
                        text=bill.describe(), evidence=bill.evidence)  # fmt: skip


def _pays(cb: CallbackRecord, stored: list[CallbackRecord]) -> bool:
    """A paid callback whose bill stayed paid (no reversal stored for it)."""
    verdicts = [Verdict(c.verdict) if c.verdict else Verdict.UNKNOWN for c in stored if c.bill_id == cb.bill_id]
    return cb.verdict == Verdict.PAID and bill_standing(verdicts) == "paid"


class LedgerActivities:
    def __init__(self, ledger: Ledger, limits: LedgerSettings, eligibility_days: int) -> None:
        self._ledger = ledger
        self._limits = limits
        self._eligibility = timedelta(days=eligibility_days)

    @property
    def ledger(self) -> Ledger:
        return self._ledger

    @activity.defn(name=ActivityName.RESERVE)
    async def reserve(self, inp: ReserveInput) -> ReserveOutput:
        """Gate (eligible at the time the workflow carries in) and reserve under the ledger's uniqueness and
        limits, in one ledger transaction; the same payout asking again gets the stored answer."""
        req = inp.request
        reservation = ReserveRequest(
            payout_id=inp.payout_id,
            receipt_id=req.receipt_id,
            fiscal_key=req.fiscal_key,
            user_key=req.user_key,
            masked_msisdn=req.masked_msisdn,
            telegram_id=req.telegram_id,
            amount_kopecks=req.amount_kopecks,
            currency=req.currency,
            payee_id=req.payee_id,
            owner=inp.payout_id,
            business_day=business_day(inp.received_at),
            user_daily_limit=self._limits.user_daily_limit,
            daily_budget_kopecks=self._limits.daily_budget_kopecks,
            max_payout_kopecks=self._limits.max_payout_kopecks,
            language=req.language,
            eligibility=Eligibility(accepted_at=req.accepted_at, decided_at=inp.received_at, window=self._eligibility),
        )
        try:
            async with _outages_counted(LedgerStep.RESERVE):
                result = await self._ledger.payouts.reserve(reservation)
        except (ValueError, TypeError, OverflowError, sa_exc.StatementError) as exc:
            # Data the ledger cannot hold (intake validates against this; kept as the last guard). The
            # exception text may quote the row, so only its type reaches the failure.
            raise ApplicationError(
                f"the ledger cannot store this receipt ({type(exc).__name__})",
                type=failures.BAD_PAYOUT_DATA,
                non_retryable=True,
            ) from None
        activity.logger.info(
            "reserve %s: accepted=%s reason=%s replay=%s", inp.payout_id, result.accepted, result.reason, result.replay
        )
        if not result.accepted and not result.replay:
            metrics.record_payout_outcome(PayoutStatus.REJECTED, result.reason)
        return ReserveOutput(accepted=result.accepted, reason=result.reason, status=result.status)

    @activity.defn(name=ActivityName.TRANSITION)
    async def transition(self, inp: TransitionInput) -> None:
        cb = inp.callback
        # A PAID row names the bill that paid, whichever round it came from.
        paid_bill = inp.bill_id or (cb.bill_id if cb is not None and inp.to_status == PayoutStatus.PAID else None)
        async with _outages_counted(LedgerStep.TRANSITION):
            try:
                move = await self._ledger.payouts.transition(
                    inp.payout_id,
                    inp.to_status,
                    reason=inp.reason,
                    portmone_status=cb.bill_status if cb else None,
                    error_code=cb.error_code if cb else None,
                    error_description=cb.error_description if cb else None,
                    bill_id=paid_bill,
                    processed_callback=cb.callback_id if cb else None,
                )
            except IllegalTransition as exc:
                raise ApplicationError(str(exc), type=failures.ILLEGAL_TRANSITION, non_retryable=True) from exc
        if move.changed:  # counted once, not again when a retry repeats a move the ledger already made
            metrics.record_payout_outcome(inp.to_status, inp.reason)

    @activity.defn(name=ActivityName.ESCALATE)
    async def escalate(self, inp: EscalateInput) -> EscalateOutput:
        """MANUAL_REVIEW with a reason, and the new-bill rule's evidence: the bills that may hold money.

        When there are such bills and `reason_if_bill_open` is given, that reason is used: an escalation
        whose bill may be live says so.
        """
        cb = inp.callback
        async with _outages_counted(LedgerStep.ESCALATE):
            try:
                escalation = await self._ledger.payouts.escalate(
                    inp.payout_id,
                    reason=inp.reason,
                    reason_if_bill_open=inp.reason_if_bill_open,
                    portmone_status=cb.bill_status if cb else None,
                    error_code=cb.error_code if cb else None,
                    error_description=cb.error_description if cb else None,
                    processed_callback=cb.callback_id if cb else None,
                )
            except IllegalTransition as exc:
                raise ApplicationError(str(exc), type=failures.ILLEGAL_TRANSITION, non_retryable=True) from exc
        if escalation.changed:
            metrics.record_payout_outcome(PayoutStatus.MANUAL_REVIEW, escalation.reason)
        return EscalateOutput(reason=escalation.reason, open_bills=[open_bill_view(b) for b in escalation.open_bills])

    @activity.defn(name=ActivityName.UNDELIVERED_CALLBACKS)
    async def undelivered_callbacks(self, payout_id: str) -> list[CallbackSignal]:
        """The payout's stored callbacks that no transition processed (the ladder reads them before
        escalating, in case a signal was lost while Temporal or the webhook was down)."""
        async with _outages_counted(LedgerStep.UNDELIVERED_CALLBACKS):
            stored = await self._ledger.callbacks.undelivered(payout_id)
        return [CallbackSignal.from_stored(cb) for cb in stored if cb.bill_id]

    @activity.defn(name=ActivityName.LEDGER_STATE)
    async def state(self, payout_id: str) -> LedgerStateOutput:
        """The payout as the ledger holds it, with its evidence (a Reset's new run, or a step the ledger
        refused, follows it): its bills, those that may hold money, unprocessed and paid callbacks."""
        async with _outages_counted(LedgerStep.STATE):
            facts = await self._ledger.payouts.facts(payout_id)
        if facts is None:
            message = f"no ledger row for {payout_id}"
            raise ApplicationError(message, type=failures.ILLEGAL_TRANSITION, non_retryable=True)
        row, stored = facts.payout, [cb for cb in facts.callbacks if cb.bill_id]
        return LedgerStateOutput(
            status=row.status,
            reason=row.reason,
            since=facts.since,
            bill_id=row.bill_id,
            bill_round=max((a.round_no for a in facts.attempts), default=0),
            bills=[a.bill_id for a in facts.attempts if a.bill_id],
            open_bills=[open_bill_view(b) for b in facts.open_bills],
            unprocessed=[CallbackSignal.from_stored(cb) for cb in stored if cb.processed_at is None],
            paid=next((CallbackSignal.from_stored(cb) for cb in stored if _pays(cb, stored)), None),
        )

    @activity.defn(name=ActivityName.RECORD_OPERATOR_ACTION)
    async def record_operator_action(self, inp: OperatorActionInput) -> OperatorActionOutput:
        """The audit row (with the confirmations that still match the ledger's evidence), then the bills
        that may still hold money: a confirmed attempt still among them had new evidence meanwhile."""
        async with _outages_counted(LedgerStep.RECORD_OPERATOR_ACTION):
            await self._ledger.operator_actions.record(
                payout_id=inp.payout_id,
                action=inp.action,
                operator=inp.operator,
                reason=inp.reason,
                reference=inp.reference,
                details=dict(inp.details),
                idempotency_key=inp.idempotency_key,
                confirms=[(c.attempt_id, c.evidence) for c in inp.confirms],
            )
            still_open = await self._ledger.attempts.open_bills(inp.payout_id) if inp.confirms else []
        return OperatorActionOutput(open_bills=[open_bill_view(b) for b in still_open])
