"""ReceiptPayout: the story of one payout, one workflow per accepted receipt (DESIGN.md §2).

Reserve in the ledger; create the Portmone bill; wait for its callback; finish PAID, or hand the payout
to a person in MANUAL_REVIEW, where only an operator update (or a late paid callback) moves it. Each
step is chosen from the status. The ledger refuses a new bill while an earlier one may hold money, and
money-path calls finish even when a cancellation is requested (it becomes a manual-review item).
User messages, analytics and `bonus.events` come from the ledger's outbox, not from this story.
Beside it: `payout_state` (what it holds), `payout_calls` (activities), `ledger_steps`, `payout_view`
(view, search attributes, Web UI), `operator_decisions` (updates). Versioning: docs/development.md.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import ClassVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import operator_decisions as decisions
from workflows import payout_calls as calls
from workflows import payout_view as view
from workflows.ledger_steps import LedgerSteps
from workflows.payout_state import STEP_FAILED, Decision, Escalation, PayoutState, bill_failure, declined, failure_type

with workflow.unsafe.imports_passed_through():
    from payouts import failures
    from payouts import search_attributes as sa
    from payouts.models import (
        CallbackSignal,
        EscalationReason,
        OperatorCancel,
        OperatorMarkPaid,
        OperatorResult,
        OperatorRetry,
        PayoutView,
        PayoutWorkflowInput,
        ReserveInput,
        ReserveOutput,
    )
    from payouts.names import CALLBACK_SIGNAL, STATUS_QUERY, UpdateName, WorkflowName
    from payouts.rejection import invalid_data
    from payouts.status import TERMINAL, PayoutStatus
    from payouts.verdicts import Verdict

S = PayoutStatus
# A run's history above this length continues as new at the next step boundary (the server's own
# suggestion comes at its warning limit; this keeps a payout far from the 51,200-event hard limit).
HISTORY_LIMIT = 10_000


def history_is_long() -> bool:
    info = workflow.info()
    return info.is_continue_as_new_suggested() or info.get_current_history_length() >= HISTORY_LIMIT


@workflow.defn(name=WorkflowName.PAYOUT)
class ReceiptPayout:
    """One receipt, at most one paid bill."""

    @workflow.init
    def __init__(self, inp: PayoutWorkflowInput) -> None:
        self._s = PayoutState.begin(inp)
        self._ledger = LedgerSteps(self._s)
        self._continue_as_new = False
        self._reminder: workflow.ActivityHandle[None] | None = None

    @workflow.run
    async def run(self, inp: PayoutWorkflowInput) -> PayoutView:
        view.refresh(self._s)
        while self._s.status not in TERMINAL:
            if self._continue_as_new or history_is_long():
                await self._continue_as_new_when_quiet()
                continue
            try:
                await self._next_step()
            except asyncio.CancelledError:
                self._s.cancel_pending = True
            except (ActivityError, ApplicationError) as err:
                await self._ledger.follow_after(err)
        await workflow.wait_condition(self._quiet)
        return self._s.view

    async def _next_step(self) -> None:
        status = self._s.status
        if self._s.cancel_pending:
            await self._on_cancellation()
        elif status == S.RECEIVED:
            await self._reserve()
        elif status == S.AWAITING_CALLBACK:
            await self._await_callback()
        elif status == S.RETRY_SCHEDULED:
            await self._back_off()
        elif status == S.MANUAL_REVIEW:
            await self._await_person()
        else:  # RESERVED, or BILL_REQUESTED after an operator's retry
            await self._request_bill()

    # ---- signal, query, updates: one line each ---------------------------------------------------

    @workflow.signal(name=CALLBACK_SIGNAL, description="A stored Portmone callback for one of this payout's bills.")
    def portmone_callback(self, callback: CallbackSignal) -> None:
        self._s.receive(callback)

    @workflow.query(name=STATUS_QUERY, description="The payout as it stands (masked phone only).")
    def status(self) -> PayoutView:
        return self._s.view

    @workflow.update(name=UpdateName.RETRY, description=decisions.RETRY_HELP)
    async def retry(self, cmd: OperatorRetry) -> OperatorResult:
        return await decisions.decide(self._s, cmd, self._ledger.record)

    @retry.validator
    def _check_retry(self, cmd: OperatorRetry) -> None:
        decisions.check_retry(self._s, cmd)

    @workflow.update(name=UpdateName.MARK_PAID, description=decisions.MARK_PAID_HELP)
    async def mark_paid(self, cmd: OperatorMarkPaid) -> OperatorResult:
        return await decisions.decide(self._s, cmd, self._ledger.record)

    @mark_paid.validator
    def _check_mark_paid(self, cmd: OperatorMarkPaid) -> None:
        decisions.check_mark_paid(self._s, cmd)

    @workflow.update(name=UpdateName.CANCEL, description=decisions.CANCEL_HELP)
    async def cancel(self, cmd: OperatorCancel) -> OperatorResult:
        return await decisions.decide(self._s, cmd, self._ledger.record)

    @cancel.validator
    def _check_cancel(self, cmd: OperatorCancel) -> None:
        decisions.check_cancel(self._s, cmd)

    # ---- the story -------------------------------------------------------------------------------

    async def _reserve(self) -> None:
        """The gate: eligible, no duplicate, within limits — or REJECTED, and no bill ever follows."""
        s = self._s
        asked = ReserveInput(payout_id=s.payout_id, request=s.request, received_at=s.received_at)
        try:
            reserved = await self._ledger.money(calls.reserve(asked))
        except STEP_FAILED as err:  # data the ledger cannot hold: nothing was reserved
            reserved = ReserveOutput(accepted=False, reason=invalid_data(failure_type(err)))
        if not reserved.accepted:
            s.progress.rejection_reason = reserved.reason
            return view.show(s, S.REJECTED)
        if reserved.status not in (None, S.RESERVED):  # a re-run (a Reset): the ledger already moved on
            return await self._ledger.follow()
        view.show(s, S.RESERVED, searched=False)

    async def _request_bill(self) -> None:
        """One bill round: bills.create behind the ledger's attempt log (which moves the payout to
        BILL_REQUESTED, then AWAITING_CALLBACK with the bill id)."""
        s = self._s
        paid = s.paid()
        if paid is not None:  # a late paid callback for an earlier bill: no new bill
            return await self._settle(paid)
        p = s.progress
        p.bill_round += 1
        p.last_error = None
        p.status = S.BILL_REQUESTED
        try:
            created = await self._ledger.money(calls.create_bill(s.bill_input(), s.policy.bill_attempt_timeout_seconds))
        except ActivityError as err:
            if failure_type(err) == failures.ILLEGAL_TRANSITION:  # the payout moved on meanwhile: follow it
                p.bill_round -= 1
                return await self._ledger.follow()
            if (why := bill_failure(err)) is not None:
                return await self._ledger.escalate(why)
            # The ledger could not record the attempt, so nothing was sent: this round again, once the
            # ledger answers (an outage costs a bounded number of events however long it lasts).
            p.bill_round -= 1
            s.unrecorded_rounds += 1
            await self._ledger.ledger_view()
            return await workflow.sleep(calls.ledger_pause(s.unrecorded_rounds))
        s.unrecorded_rounds = 0
        s.know_bill(created.bill_id)
        p.bill_id = created.bill_id
        for early in created.early_callbacks:
            s.receive(early)
        view.show(s, S.AWAITING_CALLBACK, sa.PORTMONE_BILL_ID.value_set(created.bill_id))

    async def _await_callback(self) -> None:
        """Wait for the callback that decides the round; on timeout re-read the stored ones (a signal may
        have been lost), then a person decides. Portmone's profile has no status look-up to ask."""
        s = self._s
        timeout = timedelta(seconds=s.policy.callback_timeout_seconds)
        view.set_deadline(s, "callback expected by", timeout)
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: s.cancel_pending or bool(s.deciding_callback()), timeout=timeout)
        if s.deciding_callback() is None and s.cancel_pending:
            return  # the next step turns the cancellation into a manual-review item
        if s.deciding_callback() is None:
            for stored in await self._ledger.money(calls.undelivered_callbacks(s.payout_id)):
                s.receive(stored)
        callback = s.deciding_callback()
        if callback is None:
            detail = f"no callback in {s.policy.callback_timeout_seconds} s; status look-up skipped (none exists)"
            return await self._ledger.escalate(Escalation.of(EscalationReason.CALLBACK_TIMEOUT, detail))
        await self._settle(callback)

    async def _settle(self, cb: CallbackSignal) -> None:
        """Act on the callback's verdict: paid, a new round after a transient decline, or a person."""
        s = self._s
        verdict = s.take(cb)
        if verdict == Verdict.PAID:
            return await self._complete_paid(cb)
        s.progress.last_error = cb.error_text()
        escalation = declined(cb, verdict, rounds_left=s.progress.bill_round < s.policy.max_bill_rounds)
        if escalation is not None:
            return await self._ledger.escalate(escalation, cb)
        await self._ledger.transition(S.RETRY_SCHEDULED, f"transient:{cb.error_code or 'none'}", cb)

    async def _back_off(self) -> None:
        """Wait before the next round; a late paid callback (or a cancellation) ends the wait early."""
        s = self._s
        backoff = timedelta(seconds=s.policy.retry_backoff_seconds)
        view.set_deadline(s, "next bill requested at", backoff)
        with contextlib.suppress(TimeoutError):
            await workflow.wait_condition(lambda: s.paid() is not None or s.cancel_pending, timeout=backoff)
        if not s.cancel_pending:
            await self._request_bill()

    async def _complete_paid(self, cb: CallbackSignal, *, note: str | None = None) -> None:
        """Portmone paid: the telecom top-up (keyed by the payout id), then PAID."""
        s = self._s
        try:
            await self._ledger.money(calls.topup(s.topup_input()))
        except ActivityError as err:
            s.progress.paid_callback = cb  # `retry` then repeats only the top-up
            return await self._ledger.escalate(Escalation.of(EscalationReason.TELECOM_FAILED, str(err.cause)), cb)
        s.progress.paid_callback = None
        await self._ledger.transition(S.PAID, note, cb)

    async def _await_person(self) -> None:
        """Manual review: an operator's decision, or a late paid callback; a reminder when neither comes."""
        s = self._s
        reminder = timedelta(seconds=s.policy.manual_reminder_seconds)
        view.set_deadline(s, "next operator reminder at", reminder)
        try:
            await workflow.wait_condition(
                lambda: s.decision is not None or s.cancel_pending or (s.claim is None and s.paid() is not None),
                timeout=reminder,
            )
        except TimeoutError:
            return self._remind()
        if s.decision is not None:
            await self._apply_decision()
        elif (late := s.paid()) is not None and not s.cancel_pending:
            await self._complete_late(late)

    async def _apply_decision(self) -> None:
        """Apply the operator's decision (one method per decision, `_DECISIONS`); the update answers once
        its first effect is in the ledger, and is answered even when applying it fails."""
        s = self._s
        decision, update_id = s.decision, s.claim
        assert decision is not None and update_id is not None
        action = decisions.ACTIONS[type(decision)]
        late = s.paid()
        try:
            if late is None:
                accepted, message = await self._DECISIONS[type(decision)](self, decision)
            else:  # money already moved: the late callback wins over the decision
                await self._complete_late(late)
                accepted, message = False, f"{action} not applied: a late ok callback (bill {late.bill_id}) came first"
        except BaseException:
            s.answer(update_id, False, f"{action} failed while applying; see the workflow history")
            raise
        s.answer(update_id, accepted, message)

    async def _retry(self, decision: Decision) -> tuple[bool, str]:
        s, p = self._s, self._s.progress
        if p.paid_callback is not None:  # telecom_failed: Portmone paid; repeat only the top-up (same key)
            p.open_bills = []
            await self._complete_paid(p.paid_callback, note="operator_retry_topup")
            outcome = "paid" if s.status == S.PAID else "it failed again"
            return True, f"retry applied: telecom top-up repeated, no new bill; {outcome}"
        p.open_bills, p.escalation_reason, p.escalated_at = [], None, None
        await self._ledger.transition(S.BILL_REQUESTED, None, None, sa.ESCALATION_REASON.value_unset())
        return True, f"retry applied: bill round {p.bill_round + 1} requested"

    async def _mark_paid(self, decision: Decision) -> tuple[bool, str]:
        assert isinstance(decision, OperatorMarkPaid)
        reference = decision.external_reference
        bill = reference if reference in self._s.progress.bills else None  # the payout's own bill, paid
        await self._ledger.transition(S.PAID, f"operator:{reference}"[:200], bill=bill)
        return True, f"marked paid (reference {decision.external_reference})"

    async def _cancel(self, decision: Decision) -> tuple[bool, str]:
        await self._ledger.transition(S.CANCELLED, f"operator:{decision.reason}"[:200])
        return True, "cancelled; the user is told"

    _DECISIONS: ClassVar[dict[type[Decision], Callable[[ReceiptPayout, Decision], Awaitable[tuple[bool, str]]]]] = {
        OperatorRetry: _retry,
        OperatorMarkPaid: _mark_paid,
        OperatorCancel: _cancel,
    }

    async def _complete_late(self, late: CallbackSignal) -> None:
        """A late paid callback completes a payout in manual review, with an audit note. Operator
        decisions are refused meanwhile (the top-up may take minutes, and money has moved)."""
        s = self._s
        s.settling = f"a paid callback for bill {late.bill_id} is being applied"
        try:
            await self._ledger.record_late_callback(late)
            s.progress.open_bills = []
            s.take(late)
            await self._complete_paid(late, note="late_ok_callback")
        finally:
            s.settling = None

    def _remind(self) -> None:
        """A reminder to the operators, best effort: the payout goes on waiting while it is sent (a
        decision that comes meanwhile is applied at once), and a reminder that fails changes nothing. The
        run ends or continues as new only once it is done (`_quiet`)."""
        s = self._s
        s.progress.reminders_sent += 1
        self._reminder = calls.remind_operators(s.reminder_input())
        self._reminder.add_done_callback(calls.ignore_failure)
        s.reminders_this_run += 1
        self._continue_as_new = s.reminders_this_run >= s.policy.reminders_per_run

    async def _continue_as_new_when_quiet(self) -> None:
        """Continue as new (its progress passed whole) once no operator decision is on its way: between
        steps, so the next run takes up the story from the status. A decision that comes first is applied
        first (the loop comes back here)."""
        s = self._s
        await workflow.wait_condition(lambda: s.decision is not None or self._quiet())
        if s.decision is not None:
            return await self._apply_decision()
        workflow.continue_as_new(s.next_run())

    def _quiet(self) -> bool:
        """Nothing on its way: no operator decision, no update handler, no reminder being sent."""
        reminder_done = self._reminder is None or self._reminder.done()
        return self._s.claim is None and workflow.all_handlers_finished() and reminder_done

    # ---- what automation cannot settle -------------------------------------------------------------

    async def _on_cancellation(self) -> None:
        """A Temporal cancellation (Web UI "Request Cancellation", the API): recorded, and turned into a
        manual-review item. Nothing in flight was abandoned (money-path calls finish first)."""
        s = self._s
        s.cancel_pending = False
        if not s.progress.cancel_requested:
            s.progress.cancel_requested = True
            await self._ledger.record_cancellation_request()
        if s.status in TERMINAL or s.status == S.MANUAL_REVIEW:
            return view.refresh(s)
        detail = f"cancellation requested while {s.status.value}; an operator decides"
        await self._ledger.escalate(Escalation.of(EscalationReason.CANCELLATION_REQUESTED, detail))
