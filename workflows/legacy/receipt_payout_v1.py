"""ReceiptPayoutWorkflow, the first payout type: frozen (workflows/legacy/__init__.py); new payouts run ReceiptPayout.

Reserve in the ledger, tell the user, create the Portmone bill, wait for Portmone's callback,
and finish PAID, or hand the payout to a person in MANUAL_REVIEW. Only an operator update (or a
late paid callback) moves a payout out of manual review; nothing closes it by itself.

Money safety: the ledger refuses a new bill while an earlier one may hold money (the new-bill rule,
ledger.attempts); every escalation records that evidence, and `retry`/`cancel` then need the
operator's confirmation. Money-path activities run to their end even when the workflow is asked to
cancel, and a cancellation becomes a MANUAL_REVIEW item. An outage delays a payout and never fails
it; whatever the workflow cannot settle waits in MANUAL_REVIEW with a reason.

The escalation ladder: callback timeout → stored callbacks re-read (one may have been stored while
its signal was lost) → status look-up (skipped while the protocol profile has none) → MANUAL_REVIEW
with a reason from `payouts.escalation` → reminders every `manual_reminder_seconds` until an operator
decides, continuing as new after `reminders_per_run` so history stays bounded.

Versioning (docs/development.md): changes to the commands this workflow issues go behind
`workflow.patched(...)`; histories under tests/histories/ replay against this code.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from datetime import timedelta
from typing import TypeVar

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows.legacy import payout_calls_v1 as calls

with workflow.unsafe.imports_passed_through():
    from payouts import failures
    from payouts import search_attributes as sa
    from payouts.escalation import reason_text
    from payouts.models import (
        AnalyticsEvent,
        CallbackSignal,
        CarriedPayout,
        CreateBillInput,
        EscalateInput,
        EscalationReason,
        NotifyInput,
        NotifyKind,
        NotifyOutput,
        OpenBillView,
        OperatorActionInput,
        OperatorCancel,
        OperatorMarkPaid,
        OperatorResult,
        OperatorRetry,
        PayoutRequest,
        PayoutView,
        PayoutWorkflowInput,
        ReminderInput,
        ReserveInput,
        TopupInput,
        TransitionInput,
        payout_workflow_id,
    )
    from payouts.status import TERMINAL, PayoutStatus
    from payouts.verdicts import FINAL, Verdict
    from payouts.workflow_text import current_details
    from portmone import protocol

T = TypeVar("T")

_LIMIT_REASONS = frozenset({"user_daily_limit", "daily_budget", "amount_over_max"})
_TIME = "%Y-%m-%d %H:%M UTC"
# One patch id for the money-safety changes to the commands this workflow issues (escalation with
# evidence, stored callbacks re-read before escalating, continue-as-new in manual review).
MONEY_SAFETY_PATCH = "money-safety-1"
# Update answers kept across continue-as-new (a client retry of an older update id gets its answer).
_KEPT_RESULTS = 100

Decision = OperatorRetry | OperatorMarkPaid | OperatorCancel
_ACTIONS: dict[type[Decision], str] = {OperatorRetry: "retry", OperatorMarkPaid: "mark_paid", OperatorCancel: "cancel"}


def verdict_of(cb: CallbackSignal) -> Verdict:
    """The callback's domain verdict (signals from before verdicts existed are converted here)."""
    if cb.verdict is not None:
        return cb.verdict
    return protocol.callback_verdict(cb.rsp_ok, cb.bill_status, cb.error_code)


@workflow.defn(name="ReceiptPayoutWorkflow")
class ReceiptPayoutWorkflowV1:
    """One receipt, at most one paid bill."""

    def __init__(self) -> None:
        self._request: PayoutRequest | None = None
        self._view: PayoutView | None = None
        self._inbox: list[CallbackSignal] = []
        self._seen_callbacks: set[str] = set()
        self._bills: list[str] = []
        self._round = 0
        # The new-bill rule's evidence from the last escalation: earlier bills that may hold money.
        self._open_bills: list[OpenBillView] = []
        # Operator decisions: `_claim` is the update id being applied (set before the handler's first
        # await, so a second update is refused by the validator); `_decision` is ready to apply once
        # its audit row is written; `_results` holds every finished decision's answer by update id.
        self._claim: str | None = None
        self._decision: Decision | None = None
        self._results: dict[str, OperatorResult] = {}
        # The paid callback of a payout whose telecom top-up failed: `retry` repeats only the top-up.
        self._paid_callback: CallbackSignal | None = None
        self._placeholder: workflow.ActivityHandle[NotifyOutput] | None = None
        self._message_id: int | None = None
        self._side_effects: list[asyncio.Task[None]] = []
        self._deadline_text = ""
        # A Temporal cancellation that reached the payout and is not handled yet.
        self._cancel_pending = False
        self._reminders_this_run = 0
        self._continue_as_new = False

    # ---- run ---------------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: PayoutWorkflowInput) -> PayoutView:
        req = inp.request
        self._request = req
        self._policy = inp.policy
        self._payout_id = payout_workflow_id(req.receipt_id)
        if inp.carried is not None:
            self._restore(inp.carried)
        else:
            await self._start(req)
        while True:
            try:
                while self._current.status not in TERMINAL:
                    if self._continue_as_new:
                        await self._continue_as_new_when_quiet(req)
                    await self._next_step()
                await self._drain_side_effects()
                return self._current
            except asyncio.CancelledError:
                self._cancel_pending = True
            except (ActivityError, ApplicationError) as err:
                await self._settle_failure(err)

    async def _start(self, req: PayoutRequest) -> None:
        self._view = PayoutView(
            payout_id=self._payout_id,
            receipt_id=req.receipt_id,
            status=PayoutStatus.RECEIVED,
            amount_kopecks=req.amount_kopecks,
            currency=req.currency,
            masked_msisdn=req.masked_msisdn,
            callbacks_seen=len(self._seen_callbacks),
        )
        workflow.upsert_search_attributes(
            [
                sa.RECEIPT_ID.value_set(req.receipt_id),
                sa.PAYOUT_AMOUNT_KOPECKS.value_set(req.amount_kopecks),
            ]
        )
        self._show(PayoutStatus.RECEIVED)

        try:
            reserved = await self._money(
                calls.reserve(ReserveInput(payout_id=self._payout_id, owner=self._payout_id, request=req))
            )
        except ActivityError as err:
            # Data the ledger cannot hold: nothing was reserved, no bill can follow.
            self._reject(f"invalid_data:{_failure_type(err)}")
            return
        if not reserved.accepted:
            self._reject(reserved.reason)
            return
        if reserved.status not in (None, PayoutStatus.RESERVED):
            # A reset (or an earlier run) already moved this payout on: follow the ledger.
            await self._follow_ledger(reserved.status, reserved.reason)
            return

        self._show(PayoutStatus.RESERVED)
        self._emit("payout_initiated")
        self._placeholder = calls.start_notify(
            NotifyInput(
                telegram_id=req.telegram_id,
                kind=NotifyKind.PROCESSING,
                language=req.language,
                amount_kopecks=req.amount_kopecks,
            ),
            "tell the user: processing your top-up",
        )

    def _reject(self, reason: str | None) -> None:
        self._update(rejection_reason=reason)
        self._show(PayoutStatus.REJECTED)
        self._emit("payout_failure", reason=reason)
        if reason in _LIMIT_REASONS:
            self._tell_user(NotifyKind.REJECTED)

    async def _next_step(self) -> None:
        if self._cancel_pending:
            await self._on_cancellation()
        elif self._current.status == PayoutStatus.MANUAL_REVIEW:
            await self._manual_review()
        else:
            await self._bill_round()

    # ---- signal, query, updates ----------------------------------------------------------------

    @workflow.signal(name="portmone_callback", description="A stored Portmone callback for one of this payout's bills.")
    def portmone_callback(self, callback: CallbackSignal) -> None:
        if callback.dedupe_key in self._seen_callbacks:
            return
        self._seen_callbacks.add(callback.dedupe_key)
        self._inbox.append(callback)
        if self._view is not None:  # a signal can be delivered before run() has built the view
            self._update(callbacks_seen=len(self._seen_callbacks))

    @workflow.query(name="status", description="The payout as it stands (masked phone only).")
    def status(self) -> PayoutView:
        return self._current

    @workflow.update(
        name="retry",
        description=(
            "Operator: try again — a new Portmone bill (after telecom_failed: only the top-up again). "
            "Needs operator and reason; while earlier bills may hold money also confirmed_no_bill_at_portmone."
        ),
    )
    async def retry(self, cmd: OperatorRetry) -> OperatorResult:
        return await self._decide(cmd, "retry", reference=None)

    @retry.validator
    def _validate_retry(self, cmd: OperatorRetry) -> None:
        if self._is_repeat():
            return
        self._validate_common(cmd.operator, cmd.reason)
        if self._paid_callback is not None:
            return  # telecom_failed: only the top-up is repeated, no new bill
        paid = [b for b in self._open_bills if b.verdict == "paid"]
        if paid:
            raise _refusal(
                f"bill {paid[0].bill_id} was paid (Portmone's callback is stored): a new bill would pay twice; "
                "use mark_paid, or wait for the payout to complete"
            )
        self._require_confirmation(cmd.confirmed_no_bill_at_portmone, "retrying")

    @workflow.update(
        name="mark_paid",
        description="Operator: the payout was paid outside the automation. Needs operator, reason, external_reference.",
    )
    async def mark_paid(self, cmd: OperatorMarkPaid) -> OperatorResult:
        return await self._decide(cmd, "mark_paid", reference=cmd.external_reference)

    @mark_paid.validator
    def _validate_mark_paid(self, cmd: OperatorMarkPaid) -> None:
        if self._is_repeat():
            return
        self._validate_common(cmd.operator, cmd.reason, ("external_reference", cmd.external_reference))

    @workflow.update(
        name="cancel",
        description=(
            "Operator: close the payout without paying; the user is told. Needs operator and reason; while "
            "earlier bills may hold money also confirmed_no_bill_at_portmone."
        ),
    )
    async def cancel(self, cmd: OperatorCancel) -> OperatorResult:
        return await self._decide(cmd, "cancel", reference=None)

    @cancel.validator
    def _validate_cancel(self, cmd: OperatorCancel) -> None:
        if self._is_repeat():
            return
        self._validate_common(cmd.operator, cmd.reason)
        if self._paid_callback is None:
            self._require_confirmation(cmd.confirmed_no_bill_at_portmone, "cancelling")

    def _require_confirmation(self, confirmed: bool, doing: str) -> None:
        live = [b.text for b in self._open_bills if b.verdict != "paid"]
        if live and not confirmed:
            raise _refusal(
                f"an earlier bill may hold money ({'; '.join(live)}): check Portmone's cabinet, cancel any unpaid "
                f"bill there, and confirm that Portmone holds no bill that can still be paid "
                f"(confirmed_no_bill_at_portmone) before {doing}, or a second payment may follow"
            )

    def _is_repeat(self) -> bool:
        """The same update id again (a client retry): it gets the first answer, nothing happens twice."""
        info = workflow.current_update_info()
        return info is not None and (info.id in self._results or info.id == self._claim)

    def _validate_common(self, operator: str, reason: str, *more: tuple[str, str]) -> None:
        fields = (("operator", operator), ("reason", reason), *more)
        missing = [name for name, value in fields if not value.strip()]
        if missing:
            raise _refusal(f"missing: {', '.join(missing)}")
        if self._view is None or self._view.status != PayoutStatus.MANUAL_REVIEW:
            state = self._view.status.value if self._view else "not started"
            raise _refusal(f"payout is {state}, not MANUAL_REVIEW: nothing for an operator to do")
        if self._claim is not None:
            raise _refusal("another operator decision is being applied")

    async def _decide(self, cmd: Decision, action: str, reference: str | None) -> OperatorResult:
        info = workflow.current_update_info()
        update_id = info.id if info else str(workflow.uuid4())
        if update_id in self._results or update_id == self._claim:
            await workflow.wait_condition(lambda: update_id in self._results)
            return self._results[update_id]
        if self._claim is not None:  # the validator refuses this; kept for updates sent without validation
            raise ApplicationError("another operator decision is being applied", non_retryable=True)
        self._claim = update_id  # before the first await: a concurrent update now fails validation
        details = {"escalation_reason": self._current.escalation_reason or "", "update_id": update_id}
        confirms: list[int] = []
        if isinstance(cmd, OperatorRetry | OperatorCancel):
            details["confirmed_no_bill_at_portmone"] = str(cmd.confirmed_no_bill_at_portmone).lower()
            if cmd.confirmed_no_bill_at_portmone:
                confirms = [b.attempt_id for b in self._open_bills if b.verdict != "paid"]
                details["confirmed_bills"] = "; ".join(b.text for b in self._open_bills if b.verdict != "paid")
        try:
            await self._record_operator_action(
                action, cmd.operator, cmd.reason, reference, f"{self._payout_id}:update:{update_id}", details, confirms
            )
        except ActivityError as err:
            # The audit row could not be written: nothing was decided, and the next decision may come.
            self._answer(update_id, False, f"{action} not applied: the audit record failed ({_failure_type(err)})")
            raise ApplicationError(self._results[update_id].message, non_retryable=True) from None
        self._decision = cmd
        await workflow.wait_condition(lambda: update_id in self._results)
        return self._results[update_id]

    # ---- one bill round ----------------------------------------------------------------------

    async def _start_round(self) -> None:
        self._round += 1
        self._update(bill_round=self._round, last_error=None)
        await self._transition(PayoutStatus.BILL_REQUESTED)

    async def _bill_round(self, *, started: bool = False) -> None:
        if self._paid() is not None:
            # A late paid callback for an earlier bill beat the new round: no new bill.
            await self._apply_callback(self._paid_or_fail())
            return
        req = self._req
        if not started:
            await self._start_round()
        try:
            created = await self._money(
                calls.create_bill(
                    CreateBillInput(
                        payout_id=self._payout_id,
                        receipt_id=req.receipt_id,
                        telegram_id=req.telegram_id,
                        msisdn_token=req.msisdn_token,
                        amount_kopecks=req.amount_kopecks,
                        currency=req.currency,
                        payee_id=req.payee_id,
                        round_no=self._round,
                    ),
                    self._policy.bill_attempt_timeout_seconds,
                )
            )
        except ActivityError as err:
            await self._bill_failed(err)
            return

        self._bills.append(created.bill_id)
        self._update(bill_id=created.bill_id)
        workflow.upsert_search_attributes([sa.PORTMONE_BILL_ID.value_set(created.bill_id)])
        for early in created.early_callbacks:
            self.portmone_callback(early)

        if self._final_callback() is None:
            await self._transition(PayoutStatus.AWAITING_CALLBACK)
        timeout = timedelta(seconds=self._policy.callback_timeout_seconds)
        self._deadline_text = f"callback expected by {(workflow.now() + timeout).strftime(_TIME)}"
        self._show(self._current.status)
        try:
            await workflow.wait_condition(
                lambda: self._final_callback() is not None or self._cancel_pending, timeout=timeout
            )
        except TimeoutError:
            pass
        finally:
            self._deadline_text = ""
        if self._cancel_pending and self._final_callback() is None:
            return  # the run loop turns the cancellation into a manual-review item
        callback = self._final_callback()
        if callback is None:
            callback = await self._ladder()
            if callback is None:
                return
        await self._apply_callback(callback)

    async def _ladder(self) -> CallbackSignal | None:
        """No callback in time. Step 1: re-read the stored ones (a signal may have been lost); step 2:
        ask Portmone; step 3: a person decides. Returns a callback that decides the round, or None."""
        if workflow.patched(MONEY_SAFETY_PATCH):
            for stored in await self._money(calls.undelivered_callbacks(self._payout_id)):
                self.portmone_callback(stored)
            found = self._final_callback()
            if found is not None:
                return found
        looked_up, lookup_note = self._look_up_status()
        if looked_up is not None:
            return looked_up
        self._emit("payout_timeout", reason=EscalationReason.CALLBACK_TIMEOUT.value)
        detail = f"no callback within {self._policy.callback_timeout_seconds} s; {lookup_note}"
        await self._escalate(reason_text(EscalationReason.CALLBACK_TIMEOUT), detail)
        return None

    def _look_up_status(self) -> tuple[CallbackSignal | None, str]:
        """Ladder step 2: ask Portmone how the bill ended, when the protocol profile has a way to ask.

        PortmoneDirect documents no status method (`portmone.protocol.METHOD_BILLS_STATUS` is None),
        so the step is skipped and the payout escalates with `callback_timeout`. When Portmone documents
        one: add a `BillActivities.bill_status` activity calling it, execute it here (behind a patch), and
        return its answer as a CallbackSignal (a final status then settles the round like a callback
        would; anything else returns None and escalates).
        """
        if protocol.METHOD_BILLS_STATUS is None:
            return None, "status look-up skipped: the Portmone protocol profile has no status method"
        workflow.logger.warning("METHOD_BILLS_STATUS is set but no status look-up activity exists yet")
        return None, "status look-up not implemented for the configured method"

    async def _bill_failed(self, err: ActivityError) -> None:
        """bills.create did not give us a bill. Whether an earlier bill may hold money is the ledger's
        call (the escalation reads it): a lost last attempt is `outcome_unknown`, never `retries_exhausted`."""
        cause = err.cause
        kind = cause.type if isinstance(cause, ApplicationError) else None
        message = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
        unknown = reason_text(EscalationReason.OUTCOME_UNKNOWN)
        if kind == failures.PERMANENT:
            code = str(cause.details[0]) if isinstance(cause, ApplicationError) and cause.details else "unknown"
            await self._escalate(reason_text(EscalationReason.PERMANENT_ERROR, code), message, if_bill_open=unknown)
        elif kind == failures.BAD_PAYOUT_DATA:
            reason = reason_text(EscalationReason.PERMANENT_ERROR, "bad_payout_data")
            await self._escalate(reason, message, if_bill_open=unknown)
        elif kind in (failures.OUTCOME_UNKNOWN, failures.BILL_MAY_BE_LIVE):
            await self._escalate(unknown, message)
        else:
            # Transient refusals or timeouts until the retries ran out, or a ledger write that failed
            # after the send: the ledger knows whether a bill may exist.
            await self._escalate(reason_text(EscalationReason.RETRIES_EXHAUSTED), message, if_bill_open=unknown)

    # ---- callbacks ---------------------------------------------------------------------------

    def _paid(self) -> CallbackSignal | None:
        """A stored callback saying one of this payout's bills was paid (the ledger routes only our bills)."""
        for cb in self._inbox:
            if verdict_of(cb) == Verdict.PAID:
                return cb
        return None

    def _final_callback(self) -> CallbackSignal | None:
        """The first callback that decides the current round (or says any of our bills was paid)."""
        paid = self._paid()
        if paid is not None:
            return paid
        current = self._current.bill_id
        for cb in self._inbox:
            if cb.bill_id == current and verdict_of(cb) in FINAL:
                return cb
        return None

    def _paid_or_fail(self) -> CallbackSignal:
        paid = self._paid()
        assert paid is not None
        return paid

    async def _apply_callback(self, cb: CallbackSignal) -> None:
        self._inbox.remove(cb)
        verdict = verdict_of(cb)
        if cb.bill_id and cb.bill_id not in self._bills:
            self._bills.append(cb.bill_id)  # a bill learnt from its callback (its answer was lost)
        if verdict == Verdict.PAID:
            await self._complete_paid(cb)
            return
        if verdict == Verdict.REVERSED:
            await self._escalate(reason_text(EscalationReason.REVERSED), "Portmone reports the payment returned", cb)
            return
        if verdict == Verdict.UNKNOWN:
            detail = f"unknown bill status {cb.bill_status!r}"
            await self._escalate(reason_text(EscalationReason.PERMANENT_ERROR, "unknown_status"), detail, cb)
            return
        code = cb.error_code or "none"
        detail = f"Portmone: {code} {cb.error_description or ''}".strip()
        self._update(last_error=detail)
        if verdict == Verdict.DECLINED_TRANSIENT:
            if self._round < self._policy.max_bill_rounds:
                await self._transition(PayoutStatus.RETRY_SCHEDULED, reason=f"transient:{code}", callback=cb)
                self._tell_user(NotifyKind.DELAYED)
                backoff = timedelta(seconds=self._policy.retry_backoff_seconds)
                # A late paid callback (or a cancellation) ends the back-off early: no new bill then.
                with contextlib.suppress(TimeoutError):
                    await workflow.wait_condition(
                        lambda: self._paid() is not None or self._cancel_pending, timeout=backoff
                    )
                return
            await self._escalate(reason_text(EscalationReason.RETRIES_EXHAUSTED), detail, cb)
            return
        await self._escalate(reason_text(EscalationReason.PERMANENT_ERROR, code), detail, cb)

    async def _complete_paid(self, cb: CallbackSignal | None, *, note: str | None = None) -> None:
        req = self._req
        topup = TopupInput(
            payout_id=self._payout_id,
            msisdn_token=req.msisdn_token,
            amount_kopecks=req.amount_kopecks,
            currency=req.currency,
        )
        try:
            await self._money(calls.topup(topup))
        except ActivityError as err:
            self._paid_callback = cb
            await self._escalate(reason_text(EscalationReason.TELECOM_FAILED), str(err.cause or err), cb)
            return
        self._paid_callback = None
        await self._transition(PayoutStatus.PAID, reason=note, callback=cb)
        self._tell_user(NotifyKind.PAID)
        self._emit("payout_success")

    # ---- manual review -------------------------------------------------------------------------

    async def _escalate(
        self, reason: str, detail: str, cb: CallbackSignal | None = None, *, if_bill_open: str | None = None
    ) -> None:
        """Hand the payout to a person; reasons come from `payouts.escalation.reason_text`.

        The ledger records MANUAL_REVIEW and answers with the earlier bills that may hold money; with such
        a bill, `if_bill_open` replaces `reason`, and `retry`/`cancel` then need the operator's confirmation.
        """
        if workflow.patched(MONEY_SAFETY_PATCH):
            escalated = await self._money(
                calls.escalate(
                    EscalateInput(
                        payout_id=self._payout_id, reason=reason, reason_if_bill_open=if_bill_open, callback=cb
                    )
                )
            )
            reason = escalated.reason
            self._open_bills = list(escalated.open_bills)
            self._update(
                escalation_reason=reason,
                last_error=detail[:300],
                escalated_at=workflow.now(),
                reminders_sent=0,
                open_bills=[b.text for b in self._open_bills],
            )
            workflow.upsert_search_attributes([sa.ESCALATION_REASON.value_set(reason)])
            self._show(PayoutStatus.MANUAL_REVIEW)
        else:
            self._update(
                escalation_reason=reason, last_error=detail[:300], escalated_at=workflow.now(), reminders_sent=0
            )
            workflow.upsert_search_attributes([sa.ESCALATION_REASON.value_set(reason)])
            await self._transition(PayoutStatus.MANUAL_REVIEW, reason=reason, callback=cb)
        self._tell_user(NotifyKind.DELAYED)
        self._emit("payout_failure", reason=reason)

    async def _manual_review(self) -> None:
        """Wait for a person (or a late paid callback); remind while waiting; never close alone."""
        reminder = timedelta(seconds=self._policy.manual_reminder_seconds)
        while True:
            self._deadline_text = f"next operator reminder at {(workflow.now() + reminder).strftime(_TIME)}"
            self._refresh_details()
            try:
                await workflow.wait_condition(
                    lambda: self._decision is not None
                    or self._cancel_pending
                    or (self._claim is None and self._paid() is not None),
                    timeout=reminder,
                )
            except TimeoutError:
                await self._remind()
                if self._should_continue_as_new():
                    self._continue_as_new = True
                    return
                continue
            finally:
                self._deadline_text = ""
            if self._cancel_pending:
                return
            if self._decision is None:
                await self._complete_late(self._paid_or_fail())
                return
            await self._apply_decision()
            return

    def _should_continue_as_new(self) -> bool:
        self._reminders_this_run += 1
        due = (
            self._reminders_this_run >= self._policy.reminders_per_run
            or workflow.info().is_continue_as_new_suggested()
        )
        return due and workflow.patched(MONEY_SAFETY_PATCH)

    async def _complete_late(self, late: CallbackSignal) -> None:
        """A late paid callback completes a payout in manual review, with an audit note."""
        self._inbox.remove(late)
        await self._record_operator_action(
            "late_callback", "system", "late ok callback completed a payout in manual review",
            late.bill_id, f"{self._payout_id}:late-callback:{late.dedupe_key}", {},
        )
        self._open_bills = []
        await self._complete_paid(late, note="late_ok_callback")

    async def _apply_decision(self) -> None:
        """Apply the operator's decision; the update answers once its first effect is in the ledger."""
        decision, update_id = self._decision, self._claim
        assert decision is not None and update_id is not None
        action = _ACTIONS[type(decision)]
        late = self._paid()
        try:
            if late is not None:
                # Money already moved: the late callback wins over whatever the operator chose.
                await self._complete_late(late)
                self._answer(update_id, False, f"{action} not applied: a late ok callback for bill "
                             f"{late.bill_id} completed the payout first")
                return
            if isinstance(decision, OperatorRetry):
                self._update(escalation_reason=None, escalated_at=None, open_bills=[])
                self._open_bills = []
                workflow.upsert_search_attributes([sa.ESCALATION_REASON.value_unset()])
                if self._paid_callback is not None:
                    # telecom_failed: Portmone was paid; repeat only the top-up (same idempotency key).
                    # The claim holds until it ends, so no other decision can slip in meanwhile.
                    await self._complete_paid(self._paid_callback, note="operator_retry_topup")
                    outcome = "paid" if self._current.status == PayoutStatus.PAID else "it failed again"
                    self._answer(update_id, True, f"retry applied: telecom top-up repeated, no new bill; {outcome}")
                    return
                await self._start_round()
                self._answer(update_id, True, f"retry applied: bill round {self._round} requested")
            elif isinstance(decision, OperatorMarkPaid):
                await self._transition(PayoutStatus.PAID, reason=f"operator:{decision.external_reference}"[:200])
                self._answer(update_id, True, f"marked paid (reference {decision.external_reference})")
                self._tell_user(NotifyKind.PAID)
                self._emit("payout_success", reason="operator_mark_paid")
                return
            else:
                await self._transition(PayoutStatus.CANCELLED, reason=f"operator:{decision.reason}"[:200])
                self._answer(update_id, True, "cancelled; the user is told")
                self._tell_user(NotifyKind.CANCELLED)
                self._emit("payout_failure", reason="operator_cancel")
                return
        finally:
            if update_id not in self._results:  # an activity failed: answer the update before raising
                self._answer(update_id, False, f"{action} failed while applying; see the workflow history")
        await self._bill_round(started=True)

    def _answer(self, update_id: str, accepted: bool, message: str) -> None:
        self._results[update_id] = OperatorResult(
            accepted=accepted, status=self._current.status, message=message, update_id=update_id
        )
        self._decision = None
        self._claim = None

    async def _remind(self) -> None:
        self._update(reminders_sent=self._current.reminders_sent + 1)
        await calls.remind_best_effort(
            ReminderInput(
                payout_id=self._payout_id,
                receipt_id=self._req.receipt_id,
                reason=self._current.escalation_reason or "unknown",
                amount_kopecks=self._req.amount_kopecks,
                reminder_no=self._current.reminders_sent,
            )
        )

    # ---- what automation cannot settle ----------------------------------------------------------

    async def _on_cancellation(self) -> None:
        """A Temporal cancellation (Web UI "Request Cancellation", the API): recorded, and turned into a
        manual-review item. Nothing in flight was abandoned (money-path calls finish first)."""
        self._cancel_pending = False
        first = not self._current.cancel_requested
        self._update(cancel_requested=True)
        if first:
            await self._record_operator_action(
                "cancellation_requested", "temporal", "a Temporal cancellation request reached the payout",
                None, f"{self._payout_id}:cancellation-requested", {"status": self._current.status.value},
            )
        if self._current.status in TERMINAL or self._current.status == PayoutStatus.MANUAL_REVIEW:
            self._refresh_details()
            return
        detail = f"cancellation requested while {self._current.status.value}; an operator decides"
        await self._escalate(reason_text(EscalationReason.CANCELLATION_REQUESTED), detail)

    async def _settle_failure(self, err: ActivityError | ApplicationError) -> None:
        """An activity refused for good (the ledger refused a status change, bad data): never fail the
        payout; follow the ledger, or wait for a person."""
        workflow.logger.warning("payout %s: %s; checking the ledger", self._payout_id, _failure_type(err))
        try:
            state = await self._money(calls.ledger_state(self._payout_id))
            await self._follow_ledger(state.status, state.reason)
        except ActivityError as again:
            # Even the ledger's own view could not be followed: wait for a person, ledger untouched.
            self._update(
                escalation_reason=reason_text(EscalationReason.STATE_CONFLICT),
                last_error=f"{_failure_type(err)}, then {_failure_type(again)}",
                escalated_at=workflow.now(),
            )
            self._show(PayoutStatus.MANUAL_REVIEW)

    async def _follow_ledger(self, status: PayoutStatus, reason: str | None) -> None:
        """Make the workflow agree with the ledger: a closed payout stays closed, one in manual review
        waits there, anything else goes to a person as `state_conflict`."""
        if status in TERMINAL or status == PayoutStatus.MANUAL_REVIEW:
            self._update(escalation_reason=reason if status == PayoutStatus.MANUAL_REVIEW else None)
            self._show(status)
            return
        detail = f"the ledger holds this payout as {status.value} ({reason or 'no reason'})"
        await self._escalate(reason_text(EscalationReason.STATE_CONFLICT), detail)

    # ---- continue-as-new -------------------------------------------------------------------------

    async def _continue_as_new_when_quiet(self, req: PayoutRequest) -> None:
        """Continue as new once no operator decision is on its way (one that comes first is applied)."""
        await workflow.wait_condition(
            lambda: self._decision is not None or (self._claim is None and workflow.all_handlers_finished())
        )
        self._continue_as_new = False
        if self._decision is None:
            workflow.continue_as_new(PayoutWorkflowInput(request=req, policy=self._policy, carried=self._carried()))

    def _carried(self) -> CarriedPayout:
        kept = dict(list(self._results.items())[-_KEPT_RESULTS:])
        return CarriedPayout(
            view=self._current,
            inbox=list(self._inbox),
            seen_callbacks=sorted(self._seen_callbacks),
            bills=list(self._bills),
            bill_round=self._round,
            open_bills=list(self._open_bills),
            paid_callback=self._paid_callback,
            results=kept,
            message_id=self._message_id,
        )

    def _restore(self, carried: CarriedPayout) -> None:
        early = [cb for cb in self._inbox if cb.dedupe_key not in carried.seen_callbacks]
        self._inbox = [*carried.inbox, *early]  # with signals that reached this run before run() began
        self._seen_callbacks |= set(carried.seen_callbacks)
        self._view = carried.view.model_copy(update={"callbacks_seen": len(self._seen_callbacks)})
        self._bills = list(carried.bills)
        self._round = carried.bill_round
        self._open_bills = list(carried.open_bills)
        self._paid_callback = carried.paid_callback
        self._results = dict(carried.results)
        self._message_id = carried.message_id
        self._show(self._current.status)

    # ---- helpers -------------------------------------------------------------------------------

    @property
    def _current(self) -> PayoutView:
        assert self._view is not None
        return self._view

    @property
    def _req(self) -> PayoutRequest:
        assert self._request is not None
        return self._request

    def _update(self, **fields: object) -> None:
        self._view = self._current.model_copy(update=fields)

    def _show(self, status: PayoutStatus) -> None:
        """Keep the view, the PayoutStatus search attribute and the Web UI's current details in step."""
        self._update(status=status)
        workflow.upsert_search_attributes([sa.PAYOUT_STATUS.value_set(status.value)])
        self._refresh_details()

    def _refresh_details(self) -> None:
        workflow.set_current_details(current_details(self._current, self._deadline_text))

    async def _money(self, call: workflow.ActivityHandle[T]) -> T:
        """A money-path call that a cancellation request cannot interrupt (the request is kept)."""
        return await calls.uncancellable(call, self._note_cancel)

    def _note_cancel(self) -> None:
        self._cancel_pending = True

    async def _transition(
        self, to: PayoutStatus, *, reason: str | None = None, callback: CallbackSignal | None = None
    ) -> None:
        await self._money(
            calls.transition(
                TransitionInput(
                    payout_id=self._payout_id,
                    to_status=to,
                    reason=reason,
                    portmone_status=callback.bill_status if callback else None,
                    error_code=callback.error_code if callback else None,
                    error_description=callback.error_description if callback else None,
                    processed_callback_id=callback.callback_id if callback else None,
                )
            )
        )
        self._show(to)

    async def _record_operator_action(
        self,
        action: str,
        operator: str,
        reason: str,
        reference: str | None,
        key: str,
        details: dict[str, str],
        confirms: list[int] | None = None,
    ) -> None:
        await self._money(
            calls.record_operator_action(
                OperatorActionInput(
                    payout_id=self._payout_id,
                    action=action,
                    operator=operator,
                    reason=reason,
                    reference=reference,
                    idempotency_key=key,
                    details=details,
                    confirms_attempts=confirms or [],
                )
            )
        )

    def _tell_user(self, kind: NotifyKind) -> None:
        """Best effort, off the money path: the payout never waits for Telegram."""
        self._background(self._notify(kind))

    async def _notify(self, kind: NotifyKind) -> None:
        req = self._req
        if self._placeholder is not None:
            try:
                self._message_id = (await self._placeholder).message_id
            except ActivityError:
                self._message_id = None
        await calls.notify_best_effort(
            NotifyInput(
                telegram_id=req.telegram_id,
                kind=kind,
                language=req.language,
                amount_kopecks=req.amount_kopecks,
                message_id=self._message_id,
            ),
            f"tell the user: {kind.value}",
        )

    def _emit(self, name: str, *, reason: str | None = None) -> None:
        event = AnalyticsEvent(
            name=name,
            payout_id=self._payout_id,
            amount_kopecks=self._req.amount_kopecks,
            status=self._current.status,
            reason=reason,
        )
        self._background(calls.emit_best_effort(event))

    def _background(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        self._side_effects.append(asyncio.create_task(run()))

    async def _drain_side_effects(self) -> None:
        """Let the user's message and the analytics finish before the payout closes; a cancellation
        request meanwhile changes nothing (the payout is already settled)."""
        if self._side_effects:
            pending = asyncio.ensure_future(asyncio.gather(*self._side_effects))
            while not pending.done():
                try:
                    await asyncio.shield(pending)
                except asyncio.CancelledError:
                    continue


def _refusal(message: str) -> ApplicationError:
    """An update validator's refusal: readable in the Web UI and the CLI (it holds no personal data)."""
    return ApplicationError(message, type=failures.UPDATE_REFUSED, non_retryable=True)


def _failure_type(err: BaseException) -> str:
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError) and cause.type:
        return cause.type
    return type(cause).__name__
