"""The payout's ledger steps as the workflow takes them, with the view kept in step.

Each step runs to its end even when the workflow is asked to cancel meanwhile (the request is kept for
the story to handle), so a committed ledger change is never left unfollowed.
"""

from __future__ import annotations

from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import payout_calls as calls
from workflows import payout_view as view
from workflows.payout_state import STEP_FAILED, Escalation, PayoutState, failure_type

with workflow.unsafe.imports_passed_through():
    from payouts import search_attributes as sa
    from payouts.escalation import reason_text
    from payouts.models import CallbackSignal, EscalateInput, EscalationReason, OperatorActionInput, TransitionInput
    from payouts.status import TERMINAL, PayoutStatus

T = TypeVar("T")


class LedgerSteps:
    def __init__(self, state: PayoutState) -> None:
        self._s = state

    async def money(self, call: workflow.ActivityHandle[T]) -> T:
        """A money-path call that a cancellation request cannot interrupt (the request is kept)."""
        return await calls.uncancellable(call, self._note_cancel)

    def _note_cancel(self) -> None:
        self._s.cancel_pending = True

    async def transition(
        self,
        to: PayoutStatus,
        reason: str | None = None,
        cb: CallbackSignal | None = None,
        *also: SearchAttributeUpdate[Any],
    ) -> None:
        """The ledger moves the payout (and marks the deciding callback processed); then the view does."""
        inp = TransitionInput(payout_id=self._s.payout_id, to_status=to, reason=reason, callback=cb)
        await self.money(calls.transition(inp))
        view.show(self._s, to, *also)

    async def record(self, inp: OperatorActionInput) -> None:
        """An audit row (operator decisions, late callbacks, cancellation requests)."""
        await self.money(calls.record_operator_action(inp))

    async def record_late_callback(self, late: CallbackSignal) -> None:
        s = self._s
        await self.record(
            OperatorActionInput(
                payout_id=s.payout_id,
                action="late_callback",
                operator="system",
                reason="late ok callback completed a payout in manual review",
                reference=late.bill_id,
                idempotency_key=f"{s.payout_id}:late-callback:{late.dedupe_key}",
            )
        )

    async def record_cancellation_request(self) -> None:
        s = self._s
        await self.record(
            OperatorActionInput(
                payout_id=s.payout_id,
                action="cancellation_requested",
                operator="temporal",
                reason="a Temporal cancellation request reached the payout",
                idempotency_key=f"{s.payout_id}:cancellation-requested",
                details={"status": s.status.value},
            )
        )

    async def escalate(self, why: Escalation, cb: CallbackSignal | None = None) -> None:
        """Hand the payout to a person. The ledger answers with the bills that may hold money; with one,
        `why.if_bill_open` replaces the reason, and `retry`/`cancel` then need the operator's confirmation."""
        s = self._s
        inp = EscalateInput(payout_id=s.payout_id, reason=why.reason, reason_if_bill_open=why.if_bill_open, callback=cb)
        out = await self.money(calls.escalate(inp))
        p = s.progress
        p.open_bills = list(out.open_bills)
        p.escalation_reason = out.reason
        p.last_error = why.detail[:300]
        p.escalated_at = workflow.now()
        p.reminders_sent = 0
        view.show(s, PayoutStatus.MANUAL_REVIEW, sa.ESCALATION_REASON.value_set(out.reason))

    async def follow_after(self, err: ActivityError | ApplicationError) -> None:
        """A step was refused for good (the ledger refused a status change): never fail the payout;
        follow the ledger, or wait for a person."""
        s = self._s
        workflow.logger.warning("payout %s: %s; checking the ledger", s.payout_id, failure_type(err))
        try:
            state = await self.money(calls.ledger_state(s.payout_id))
            await self.follow(state.status, state.reason)
        except STEP_FAILED as again:  # even the ledger's view could not be followed: a person decides
            p = s.progress
            p.escalation_reason = reason_text(EscalationReason.STATE_CONFLICT)
            p.last_error = f"{failure_type(err)}, then {failure_type(again)}"
            p.escalated_at = workflow.now()
            view.show(s, PayoutStatus.MANUAL_REVIEW)

    async def follow(self, status: PayoutStatus, reason: str | None) -> None:
        """Agree with the ledger: a closed payout stays closed, one in manual review waits there, anything
        else goes to a person as `state_conflict`."""
        if status in TERMINAL or status == PayoutStatus.MANUAL_REVIEW:
            self._s.progress.escalation_reason = reason if status == PayoutStatus.MANUAL_REVIEW else None
            return view.show(self._s, status)
        detail = f"the ledger holds this payout as {status.value} ({reason or 'no reason'})"
        await self.escalate(Escalation.of(EscalationReason.STATE_CONFLICT, detail))
