"""The payout's ledger steps as the workflow takes them, with what the payout knows kept in step.

Each step runs to its end even when the workflow is asked to cancel meanwhile (the request is kept for
the story to handle), so a committed ledger change is never left unfollowed. `follow` is how a run
agrees with the ledger when it finds the payout further along than itself (a Reset, a refused step):
it takes over the ledger's status and its evidence, so a person deciding next sees every bill that may
hold money.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import Any, TypeVar

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import payout_calls as calls
from workflows import payout_view as view
from workflows.payout_state import STEP_FAILED, Escalation, PayoutState, failure_type

with workflow.unsafe.imports_passed_through():
    from payouts import search_attributes as sa
    from payouts.escalation import reason_kind, reason_text
    from payouts.models import (
        CallbackSignal,
        EscalateInput,
        EscalationReason,
        LedgerStateOutput,
        OperatorActionInput,
        OperatorActionOutput,
        TransitionInput,
    )
    from payouts.status import TERMINAL, PayoutStatus

T = TypeVar("T")
S = PayoutStatus
# Where a followed payout's story goes on by itself: the next bill round is asked for (the ledger's
# new-bill rule refuses it while an earlier bill may hold money), or the back-off ends first.
_GOES_ON = frozenset({S.RESERVED, S.BILL_REQUESTED, S.RETRY_SCHEDULED})


class LedgerSteps:
    def __init__(self, state: PayoutState) -> None:
        self._s = state

    async def money(self, call: Awaitable[T]) -> T:
        """A money-path call that a cancellation request cannot interrupt (the request is kept)."""
        task = call if isinstance(call, asyncio.Future) else asyncio.ensure_future(call)
        return await calls.uncancellable(task, self._note_cancel)

    def _note_cancel(self) -> None:
        self._s.cancel_pending = True

    async def transition(
        self,
        to: PayoutStatus,
        reason: str | None = None,
        cb: CallbackSignal | None = None,
        *also: SearchAttributeUpdate[Any],
        bill: str | None = None,
    ) -> None:
        """The ledger moves the payout (and marks the deciding callback processed); then the payout's own
        record does. PAID names the bill that paid (the callback's, or `bill`), in the ledger row and the
        search attributes alike."""
        bill = bill or (cb.bill_id if cb is not None and to == S.PAID else None)
        inp = TransitionInput(payout_id=self._s.payout_id, to_status=to, reason=reason, callback=cb, bill_id=bill)
        await self.money(calls.transition(inp))
        if bill is not None:
            self._s.progress.bill_id = bill
            also = (*also, sa.PORTMONE_BILL_ID.value_set(bill))
        view.show(self._s, to, *also)

    async def record(self, inp: OperatorActionInput) -> OperatorActionOutput:
        """An audit row (operator decisions, late callbacks, cancellation requests)."""
        return await self.money(calls.record_operator_action(inp))

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
        view.show(s, S.MANUAL_REVIEW, sa.ESCALATION_REASON.value_set(out.reason))

    async def ledger_view(self) -> LedgerStateOutput:
        """The payout as the ledger holds it, with its evidence (waits out an outage: it is also how a bill
        round that could not be recorded waits for the ledger to answer again)."""
        return await self.money(calls.ledger_state(self._s.payout_id))

    async def follow_after(self, err: ActivityError | ApplicationError) -> None:
        """A step was refused for good (the ledger refused a status change): never fail the payout;
        follow the ledger, or wait for a person."""
        s = self._s
        workflow.logger.warning("payout %s: %s; checking the ledger", s.payout_id, failure_type(err))
        try:
            await self.follow()
        except STEP_FAILED as again:  # even the ledger's view could not be followed: a person decides
            p = s.progress
            p.escalation_reason = reason_text(EscalationReason.STATE_CONFLICT)
            p.last_error = f"{failure_type(err)}, then {failure_type(again)}"
            p.escalated_at = workflow.now()
            view.show(s, S.MANUAL_REVIEW)

    async def follow(self) -> None:
        """Agree with the ledger and take over its evidence: its bills (so the next round is a new one),
        the callbacks no step has taken into account (and only those), and, in manual review, the reason, the bills that
        may hold money and a paid callback whose top-up failed. A closed payout stays closed; a payout
        in manual review waits there; one the ledger holds between rounds goes on from there; anything
        else goes to a person as `state_conflict`."""
        s, p = self._s, self._s.progress
        facts = await self.ledger_view()
        p.bill_round = max(p.bill_round, facts.bill_round)
        p.bill_id = facts.bill_id or p.bill_id
        for bill in facts.bills:
            s.know_bill(bill)
        # What a step already took into account is done with (a Reset re-delivers the old run's signals).
        unprocessed = {cb.callback_id for cb in facts.unprocessed}
        p.inbox = [cb for cb in p.inbox if cb.callback_id in unprocessed]
        for cb in facts.unprocessed:
            s.receive(cb)
        status = facts.status
        if status == S.MANUAL_REVIEW:
            p.escalation_reason = facts.reason
            p.open_bills = list(facts.open_bills)
            p.escalated_at = facts.since or workflow.now()
            if reason_kind(facts.reason) == EscalationReason.TELECOM_FAILED:
                p.paid_callback = facts.paid  # `retry` repeats only the top-up
            return view.show(s, status, sa.ESCALATION_REASON.value_set(facts.reason or "unknown"))
        if status in TERMINAL:
            p.escalation_reason = None
            return view.show(s, status, *([sa.PORTMONE_BILL_ID.value_set(p.bill_id)] if p.bill_id else []))
        if status == S.AWAITING_CALLBACK and p.bill_id:
            return view.show(s, status, sa.PORTMONE_BILL_ID.value_set(p.bill_id))
        if status in _GOES_ON:
            return view.show(s, status)
        detail = f"the ledger holds this payout as {status.value} ({facts.reason or 'no reason'})"
        await self.escalate(Escalation.of(EscalationReason.STATE_CONFLICT, detail))
