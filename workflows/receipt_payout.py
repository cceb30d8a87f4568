"""ReceiptPayoutWorkflow: one per accepted receipt (DESIGN.md §2).

Reserve in the ledger, tell the user, create the Portmone bill, wait for Portmone's callback,
and finish PAID, or hand the payout to a person in MANUAL_REVIEW. Only an operator update (or a
late `ok` callback) moves a payout out of manual review; nothing closes it by itself.

The escalation ladder: callback timeout → status look-up (`_look_up_status`, skipped while the
protocol profile has no status method) → MANUAL_REVIEW with a reason from `payouts.escalation`
→ reminders every `manual_reminder_seconds` until an operator decides. Operator decisions are the
updates `retry`, `mark_paid` and `cancel`: a validator refuses the wrong state or missing fields,
the handler writes the audit row (key: payout id + update id) before anything moves, and a repeated
update id gets the first answer again without a second effect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

from workflows import payout_calls as calls

with workflow.unsafe.imports_passed_through():
    from payouts import failures
    from payouts import search_attributes as sa
    from payouts.escalation import reason_text
    from payouts.models import (
        AnalyticsEvent,
        CallbackSignal,
        CreateBillInput,
        EscalationReason,
        NotifyInput,
        NotifyKind,
        NotifyOutput,
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
    from payouts.workflow_text import current_details
    from portmone import protocol
    from portmone.protocol import BillStatus, ErrorKind, classify_error, parse_bill_status

_FINAL_BILL_STATUSES = frozenset({BillStatus.PAYED, BillStatus.REJECTED, BillStatus.RETURN, BillStatus.UNKNOWN})
_LIMIT_REASONS = frozenset({"user_daily_limit", "daily_budget", "amount_over_max"})
_TIME = "%Y-%m-%d %H:%M UTC"

Decision = OperatorRetry | OperatorMarkPaid | OperatorCancel


@workflow.defn(name="ReceiptPayoutWorkflow")
class ReceiptPayoutWorkflow:
    """One receipt, at most one paid bill."""

    def __init__(self) -> None:
        self._request: PayoutRequest | None = None
        self._view: PayoutView | None = None
        self._inbox: list[CallbackSignal] = []
        self._seen_callbacks: set[str] = set()
        self._bills: list[str] = []
        self._round = 0
        self._outcome_unknown_round: int | None = None
        # Operator decisions: `_claim` is the update id being applied (set before the handler's first
        # await, so a second update is refused by the validator); `_decision` is ready to apply once
        # its audit row is written; `_results` holds every finished decision's answer by update id.
        self._claim: str | None = None
        self._decision: Decision | None = None
        self._results: dict[str, OperatorResult] = {}
        # The paid callback of a payout whose telecom top-up failed: `retry` repeats only the top-up.
        self._paid_callback: CallbackSignal | None = None
        self._placeholder: workflow.ActivityHandle[NotifyOutput] | None = None
        self._side_effects: list[asyncio.Task[None]] = []
        self._deadline_text = ""

    # ---- run ---------------------------------------------------------------------------------

    @workflow.run
    async def run(self, inp: PayoutWorkflowInput) -> PayoutView:
        req = inp.request
        self._request = req
        self._policy = inp.policy
        self._payout_id = payout_workflow_id(req.receipt_id)
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

        reserved = await calls.reserve(
            ReserveInput(payout_id=self._payout_id, owner=workflow.info().run_id, request=req)
        )
        if not reserved.accepted:
            self._update(rejection_reason=reserved.reason)
            self._show(PayoutStatus.REJECTED)
            self._emit("payout_failure", reason=reserved.reason)
            if reserved.reason in _LIMIT_REASONS:
                self._tell_user(NotifyKind.REJECTED)
            await self._drain_side_effects()
            return self._current

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

        while self._current.status not in TERMINAL:
            if self._current.status == PayoutStatus.MANUAL_REVIEW:
                await self._manual_review()
            else:
                await self._bill_round()

        await self._drain_side_effects()
        return self._current

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
            "Needs operator and reason; after outcome_unknown also confirmed_no_bill_at_portmone."
        ),
    )
    async def retry(self, cmd: OperatorRetry) -> OperatorResult:
        return await self._decide(cmd, "retry", reference=None)

    @retry.validator
    def _validate_retry(self, cmd: OperatorRetry) -> None:
        if self._is_repeat():
            return
        self._validate_common(cmd.operator, cmd.reason)
        if self._outcome_unknown_round is not None and not cmd.confirmed_no_bill_at_portmone:
            raise ValueError(
                "the last bill request's outcome is unknown: confirm that Portmone holds no bill for it "
                "(confirmed_no_bill_at_portmone) before retrying, or a second payment may follow"
            )

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
        description="Operator: close the payout without paying; the user is told. Needs operator and reason.",
    )
    async def cancel(self, cmd: OperatorCancel) -> OperatorResult:
        return await self._decide(cmd, "cancel", reference=None)

    @cancel.validator
    def _validate_cancel(self, cmd: OperatorCancel) -> None:
        if self._is_repeat():
            return
        self._validate_common(cmd.operator, cmd.reason)

    def _is_repeat(self) -> bool:
        """The same update id again (a client retry): it gets the first answer, nothing happens twice."""
        info = workflow.current_update_info()
        return info is not None and (info.id in self._results or info.id == self._claim)

    def _validate_common(self, operator: str, reason: str, *more: tuple[str, str]) -> None:
        fields = (("operator", operator), ("reason", reason), *more)
        missing = [name for name, value in fields if not value.strip()]
        if missing:
            raise ValueError(f"missing: {', '.join(missing)}")
        if self._view is None or self._view.status != PayoutStatus.MANUAL_REVIEW:
            state = self._view.status.value if self._view else "not started"
            raise ValueError(f"payout is {state}, not MANUAL_REVIEW: nothing for an operator to do")
        if self._claim is not None:
            raise ValueError("another operator decision is being applied")

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
        if isinstance(cmd, OperatorRetry):
            details["confirmed_no_bill_at_portmone"] = str(cmd.confirmed_no_bill_at_portmone).lower()
        await self._record_operator_action(
            action, cmd.operator, cmd.reason, reference, f"{self._payout_id}:update:{update_id}", details
        )
        self._decision = cmd
        await workflow.wait_condition(lambda: update_id in self._results)
        return self._results[update_id]

    # ---- one bill round ----------------------------------------------------------------------

    async def _start_round(self) -> None:
        self._round += 1
        self._update(bill_round=self._round, last_error=None)
        await self._transition(PayoutStatus.BILL_REQUESTED)

    async def _bill_round(self, *, started: bool = False) -> None:
        req = self._req
        if not started:
            await self._start_round()
        try:
            created = await calls.create_bill(
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
        except ActivityError as err:
            reason, detail = self._bill_failure_reason(err)
            await self._escalate(reason, detail)
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
            await workflow.wait_condition(lambda: self._final_callback() is not None, timeout=timeout)
        except TimeoutError:
            pass
        finally:
            self._deadline_text = ""
        callback = self._final_callback()
        if callback is None:
            # Ladder step 1 done (callback timeout); step 2: ask Portmone; step 3: a person decides.
            looked_up, lookup_note = await self._look_up_status()
            if looked_up is None:
                self._emit("payout_timeout", reason=EscalationReason.CALLBACK_TIMEOUT.value)
                detail = f"no callback within {self._policy.callback_timeout_seconds} s; {lookup_note}"
                await self._escalate(reason_text(EscalationReason.CALLBACK_TIMEOUT), detail)
                return
            callback = looked_up
        await self._apply_callback(callback)

    async def _look_up_status(self) -> tuple[CallbackSignal | None, str]:
        """Ladder step 2: ask Portmone how the bill ended, when the protocol profile has a way to ask.

        PortmoneDirect documents no status method (`portmone.protocol.METHOD_BILLS_STATUS` is None),
        so the step is skipped and the payout escalates with `callback_timeout`. When Portmone documents
        one: add a `BillActivities.bill_status` activity calling it, execute it here, and return its
        answer as a CallbackSignal (a final status then settles the round like a callback would;
        anything else returns None and escalates).
        """
        if protocol.METHOD_BILLS_STATUS is None:
            return None, "status look-up skipped: the Portmone protocol profile has no status method"
        workflow.logger.warning("METHOD_BILLS_STATUS is set but no status look-up activity exists yet")
        return None, "status look-up not implemented for the configured method"

    def _bill_failure_reason(self, err: ActivityError) -> tuple[str, str]:
        cause = err.cause
        if isinstance(cause, ApplicationError):
            if cause.type == failures.OUTCOME_UNKNOWN:
                self._outcome_unknown_round = self._round
                return reason_text(EscalationReason.OUTCOME_UNKNOWN), cause.message
            if cause.type == failures.PERMANENT:
                code = str(cause.details[0]) if cause.details else "unknown"
                return reason_text(EscalationReason.PERMANENT_ERROR, code), cause.message
            if cause.type == failures.BAD_PAYOUT_DATA:
                return reason_text(EscalationReason.PERMANENT_ERROR, "bad_payout_data"), cause.message
            return reason_text(EscalationReason.RETRIES_EXHAUSTED), cause.message
        return reason_text(EscalationReason.RETRIES_EXHAUSTED), str(cause or err)

    # ---- callbacks ---------------------------------------------------------------------------

    def _final_callback(self) -> CallbackSignal | None:
        """The first stored callback that decides the current round (or says any of our bills was paid)."""
        current = self._current.bill_id
        for cb in self._inbox:
            status = parse_bill_status(cb.bill_status)
            paid = status == BillStatus.PAYED and cb.rsp_ok
            if paid and cb.bill_id in self._bills:
                return cb
            if cb.bill_id == current and (status in _FINAL_BILL_STATUSES or not cb.rsp_ok):
                return cb
        return None

    async def _apply_callback(self, cb: CallbackSignal) -> None:
        self._inbox.remove(cb)
        status = parse_bill_status(cb.bill_status)
        if status == BillStatus.PAYED and cb.rsp_ok:
            await self._complete_paid(cb)
            return
        if status == BillStatus.RETURN:
            await self._escalate(reason_text(EscalationReason.REVERSED), "Portmone reports the payment returned", cb)
            return
        if status == BillStatus.UNKNOWN and cb.rsp_ok:
            detail = f"unknown bill status {cb.bill_status!r}"
            await self._escalate(reason_text(EscalationReason.PERMANENT_ERROR, "unknown_status"), detail, cb)
            return
        code = cb.error_code or "none"
        detail = f"Portmone: {code} {cb.error_description or ''}".strip()
        self._update(last_error=detail)
        if classify_error(cb.error_code) == ErrorKind.TRANSIENT:
            if self._round < self._policy.max_bill_rounds:
                await self._transition(PayoutStatus.RETRY_SCHEDULED, reason=f"transient:{code}", callback=cb)
                self._tell_user(NotifyKind.DELAYED)
                await workflow.sleep(timedelta(seconds=self._policy.retry_backoff_seconds))
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
            await calls.topup(topup)
        except ActivityError as err:
            self._paid_callback = cb
            await self._escalate(reason_text(EscalationReason.TELECOM_FAILED), str(err.cause or err), cb)
            return
        self._paid_callback = None
        await self._transition(PayoutStatus.PAID, reason=note, callback=cb)
        self._tell_user(NotifyKind.PAID)
        self._emit("payout_success")

    # ---- manual review -------------------------------------------------------------------------

    async def _escalate(self, reason: str, detail: str, cb: CallbackSignal | None = None) -> None:
        """Hand the payout to a person; `reason` comes from `payouts.escalation.reason_text`."""
        self._update(escalation_reason=reason, last_error=detail[:300], escalated_at=workflow.now(), reminders_sent=0)
        workflow.upsert_search_attributes([sa.ESCALATION_REASON.value_set(reason)])
        await self._transition(PayoutStatus.MANUAL_REVIEW, reason=reason, callback=cb)
        self._tell_user(NotifyKind.DELAYED)
        self._emit("payout_failure", reason=reason)

    async def _manual_review(self) -> None:
        """Wait for a person (or a late `ok` callback); remind while waiting; never close alone."""
        reminder = timedelta(seconds=self._policy.manual_reminder_seconds)
        while True:
            self._deadline_text = f"next operator reminder at {(workflow.now() + reminder).strftime(_TIME)}"
            self._refresh_details()
            try:
                await workflow.wait_condition(
                    lambda: self._decision is not None or (self._claim is None and self._late_payment() is not None),
                    timeout=reminder,
                )
            except TimeoutError:
                await self._remind()
                continue
            finally:
                self._deadline_text = ""
            if self._decision is None:
                late = self._late_payment()
                assert late is not None
                await self._complete_late(late)
                return
            await self._apply_decision()
            return

    def _late_payment(self) -> CallbackSignal | None:
        for cb in self._inbox:
            if cb.rsp_ok and parse_bill_status(cb.bill_status) == BillStatus.PAYED and cb.bill_id in self._bills:
                return cb
        return None

    async def _complete_late(self, late: CallbackSignal) -> None:
        """A late `ok` callback completes a payout in manual review, with an audit note."""
        self._inbox.remove(late)
        await self._record_operator_action(
            "late_callback", "system", "late ok callback completed a payout in manual review",
            late.bill_id, f"{self._payout_id}:late-callback:{late.dedupe_key}", {},
        )
        await self._complete_paid(late, note="late_ok_callback")

    async def _apply_decision(self) -> None:
        """Apply the operator's decision; the update answers once its first effect is in the ledger."""
        decision, update_id = self._decision, self._claim
        assert decision is not None and update_id is not None
        action = {OperatorRetry: "retry", OperatorMarkPaid: "mark_paid", OperatorCancel: "cancel"}[type(decision)]
        late = self._late_payment()
        try:
            if late is not None:
                # Money already moved: the late callback wins over whatever the operator chose.
                await self._complete_late(late)
                self._answer(update_id, False, f"{action} not applied: a late ok callback for bill "
                             f"{late.bill_id} completed the payout first")
                return
            if isinstance(decision, OperatorRetry):
                self._outcome_unknown_round = None
                self._update(escalation_reason=None, escalated_at=None)
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

    async def _transition(
        self, to: PayoutStatus, *, reason: str | None = None, callback: CallbackSignal | None = None
    ) -> None:
        await calls.transition(
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
        self._show(to)

    async def _record_operator_action(
        self, action: str, operator: str, reason: str, reference: str | None, key: str, details: dict[str, str]
    ) -> None:
        await calls.record_operator_action(
            OperatorActionInput(
                payout_id=self._payout_id,
                action=action,
                operator=operator,
                reason=reason,
                reference=reference,
                idempotency_key=key,
                details=details,
            )
        )

    def _tell_user(self, kind: NotifyKind) -> None:
        """Best effort, off the money path: the payout never waits for Telegram."""
        self._background(self._notify(kind))

    async def _notify(self, kind: NotifyKind) -> None:
        req = self._req
        message_id: int | None = None
        if self._placeholder is not None:
            try:
                message_id = (await self._placeholder).message_id
            except ActivityError:
                message_id = None
        await calls.notify_best_effort(
            NotifyInput(
                telegram_id=req.telegram_id,
                kind=kind,
                language=req.language,
                amount_kopecks=req.amount_kopecks,
                message_id=message_id,
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
        if self._side_effects:
            await asyncio.gather(*self._side_effects)
