"""Ledger activities: the gate and reservation, status transitions, the operator audit trail."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from temporalio import activity
from temporalio.exceptions import ApplicationError

from ledger import IllegalTransition, Ledger, ReserveRequest
from payouts import failures
from payouts.models import OperatorActionInput, ReserveInput, ReserveOutput, TransitionInput
from payouts.settings import LedgerSettings

BUSINESS_TZ = ZoneInfo("Europe/Kyiv")
_CLOCK_SKEW = timedelta(minutes=5)


def business_day(now: datetime) -> date:
    """Limits reset at midnight in Kyiv, where the shoppers are."""
    return now.astimezone(BUSINESS_TZ).date()


class LedgerActivities:
    def __init__(self, ledger: Ledger, limits: LedgerSettings, eligibility_days: int) -> None:
        self._ledger = ledger
        self._limits = limits
        self._eligibility = timedelta(days=eligibility_days)

    @activity.defn(name="ledger.reserve")
    async def reserve(self, inp: ReserveInput) -> ReserveOutput:
        """Gate (accepted and eligible) and reserve under the ledger's uniqueness and limits."""
        req = inp.request
        now = datetime.now(UTC)
        accepted_at = req.accepted_at if req.accepted_at.tzinfo else req.accepted_at.replace(tzinfo=UTC)
        if accepted_at > now + _CLOCK_SKEW:
            return ReserveOutput(accepted=False, reason="not_eligible:accepted_in_future")
        if now - accepted_at > self._eligibility:
            return ReserveOutput(accepted=False, reason="not_eligible:receipt_too_old")
        result = await self._ledger.reserve(
            ReserveRequest(
                payout_id=inp.payout_id,
                receipt_id=req.receipt_id,
                fiscal_key=req.fiscal_key,
                user_key=req.user_key,
                masked_msisdn=req.masked_msisdn,
                telegram_id=req.telegram_id,
                amount_kopecks=req.amount_kopecks,
                currency=req.currency,
                payee_id=req.payee_id,
                owner=inp.owner,
                business_day=business_day(now),
                user_daily_limit=self._limits.user_daily_limit,
                daily_budget_kopecks=self._limits.daily_budget_kopecks,
                max_payout_kopecks=self._limits.max_payout_kopecks,
            )
        )
        activity.logger.info(
            "reserve %s: accepted=%s reason=%s replay=%s", inp.payout_id, result.accepted, result.reason, result.replay
        )
        return ReserveOutput(accepted=result.accepted, reason=result.reason)

    @activity.defn(name="ledger.transition")
    async def transition(self, inp: TransitionInput) -> None:
        try:
            await self._ledger.transition(
                inp.payout_id,
                inp.to_status,
                reason=inp.reason,
                portmone_status=inp.portmone_status,
                error_code=inp.error_code,
                error_description=inp.error_description,
            )
        except IllegalTransition as exc:
            raise ApplicationError(str(exc), type=failures.ILLEGAL_TRANSITION, non_retryable=True) from exc
        if inp.processed_callback_id is not None:
            await self._ledger.mark_callback_processed(inp.processed_callback_id)

    @activity.defn(name="ledger.record_operator_action")
    async def record_operator_action(self, inp: OperatorActionInput) -> None:
        await self._ledger.record_operator_action(
            payout_id=inp.payout_id,
            action=inp.action,
            operator=inp.operator,
            reason=inp.reason,
            reference=inp.reference,
            details=dict(inp.details),
            idempotency_key=inp.idempotency_key,
        )
