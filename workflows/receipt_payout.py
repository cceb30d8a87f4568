"""ReceiptPayoutWorkflow: one per accepted receipt (DESIGN.md §2).

Reserve in the ledger, tell the user, create the Portmone bill, wait for Portmone's callback,
and finish PAID, or hand the payout to a person in MANUAL_REVIEW. Only an operator update (or a
late `ok` callback) moves a payout out of manual review; nothing closes it by itself.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from activities.bill import BillActivities
    from activities.ledger import LedgerActivities
    from activities.notify import NotifyActivities
    from activities.telecom import TelecomActivities
    from payouts import failures
    from payouts import search_attributes as sa
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
    from portmone.protocol import BillStatus, ErrorKind, classify_error, parse_bill_status

NOTIFY_TASK_QUEUE = "payouts-notify"

_LEDGER_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    maximum_interval=timedelta(seconds=30),
    non_retryable_error_types=[failures.ILLEGAL_TRANSITION],
)
_BILL_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=2),
    maximum_attempts=6,
    non_retryable_error_types=failures.NON_RETRYABLE_BILL,
)
_SIDE_EFFECT_RETRY = RetryPolicy(initial_interval=timedelta(seconds=2), maximum_attempts=5)
_TELECOM_RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=5),
    maximum_interval=timedelta(minutes=5),
    non_retryable_error_types=[failures.TELECOM_REFUSED],
)

_FINAL_BILL_STATUSES = frozenset({BillStatus.PAYED, BillStatus.REJECTED, BillStatus.RETURN, BillStatus.UNKNOWN})
_LIMIT_REASONS = frozenset({"user_daily_limit", "daily_budget", "amount_over_max"})


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
        self._decision: OperatorRetry | OperatorMarkPaid | OperatorCancel | None = None
        self._decision_update_id = ""
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
        )
        workflow.upsert_search_attributes(
            [
                sa.RECEIPT_ID.value_set(req.receipt_id),
                sa.PAYOUT_AMOUNT_KOPECKS.value_set(req.amount_kopecks),
            ]
        )
        self._show(PayoutStatus.RECEIVED)

        reserved = await workflow.execute_activity_method(
            LedgerActivities.reserve,
            ReserveInput(payout_id=self._payout_id, owner=workflow.info().run_id, request=req),
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(minutes=10),
            retry_policy=_LEDGER_RETRY,
            summary="reserve the payout in the ledger (limits, duplicates)",
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
        self._placeholder = workflow.start_activity_method(
            NotifyActivities.notify,
            NotifyInput(
                telegram_id=req.telegram_id,
                kind=NotifyKind.PROCESSING,
                language=req.language,
                amount_kopecks=req.amount_kopecks,
            ),
            task_queue=NOTIFY_TASK_QUEUE,
            start_to_close_timeout=timedelta(seconds=15),
            schedule_to_close_timeout=timedelta(minutes=2),
            retry_policy=_SIDE_EFFECT_RETRY,
            summary="tell the user: processing your top-up",
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
        self._update(callbacks_seen=len(self._seen_callbacks))

    @workflow.query(name="status", description="The payout as it stands (masked phone only).")
    def status(self) -> PayoutView:
        return self._current

    @workflow.update(name="retry", description="Operator: create a new bill for a payout in manual review.")
    async def retry(self, cmd: OperatorRetry) -> OperatorResult:
        return await self._decide(cmd, "retry", reference=None)

    @retry.validator
    def _validate_retry(self, cmd: OperatorRetry) -> None:
        self._validate_common(cmd.operator, cmd.reason)
        if self._outcome_unknown_round is not None and not cmd.confirmed_no_bill_at_portmone:
            raise ValueError(
                "the last bill request's outcome is unknown: confirm that Portmone holds no bill for it "
                "(confirmed_no_bill_at_portmone) before retrying, or a second payment may follow"
            )

    @workflow.update(name="mark_paid", description="Operator: the payout was paid outside the automation.")
    async def mark_paid(self, cmd: OperatorMarkPaid) -> OperatorResult:
        return await self._decide(cmd, "mark_paid", reference=cmd.external_reference)

    @mark_paid.validator
    def _validate_mark_paid(self, cmd: OperatorMarkPaid) -> None:
        self._validate_common(cmd.operator, cmd.reason)
        if not cmd.external_reference.strip():
            raise ValueError("an external reference (e.g. Portmone bill or payment id) is required")

    @workflow.update(name="cancel", description="Operator: close the payout without paying; the user is told.")
    async def cancel(self, cmd: OperatorCancel) -> OperatorResult:
        return await self._decide(cmd, "cancel", reference=None)

    @cancel.validator
    def _validate_cancel(self, cmd: OperatorCancel) -> None:
        self._validate_common(cmd.operator, cmd.reason)

    def _validate_common(self, operator: str, reason: str) -> None:
        missing = [name for name, value in (("operator", operator), ("reason", reason)) if not value.strip()]
        if missing:
            raise ValueError(f"missing: {', '.join(missing)}")
        if self._view is None or self._view.status != PayoutStatus.MANUAL_REVIEW:
            state = self._view.status if self._view else "not started"
            raise ValueError(f"payout is {state}, not MANUAL_REVIEW: nothing for an operator to do")
        if self._decision is not None:
            raise ValueError("another operator decision is being applied")

    async def _decide(
        self, cmd: OperatorRetry | OperatorMarkPaid | OperatorCancel, action: str, reference: str | None
    ) -> OperatorResult:
        info = workflow.current_update_info()
        update_id = info.id if info else action
        details = {"escalation_reason": self._current.escalation_reason or ""}
        if isinstance(cmd, OperatorRetry):
            details["confirmed_no_bill_at_portmone"] = str(cmd.confirmed_no_bill_at_portmone).lower()
        await self._record_operator_action(action, cmd.operator, cmd.reason, reference, update_id, details)
        self._decision = cmd
        self._decision_update_id = update_id
        await workflow.wait_condition(lambda: self._decision is None)
        return OperatorResult(accepted=True, status=self._current.status, message=f"{action} applied")

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
            created = await workflow.execute_activity_method(
                BillActivities.create_bill,
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
                start_to_close_timeout=timedelta(seconds=self._policy.bill_attempt_timeout_seconds),
                schedule_to_close_timeout=timedelta(minutes=15),
                retry_policy=_BILL_RETRY,
                summary=f"Portmone bills.create, round {self._round}",
            )
        except ActivityError as err:
            await self._escalate(*self._bill_failure_reason(err))
            return

        self._bills.append(created.bill_id)
        self._update(bill_id=created.bill_id)
        workflow.upsert_search_attributes([sa.PORTMONE_BILL_ID.value_set(created.bill_id)])
        for early in created.early_callbacks:
            self.portmone_callback(early)

        if self._final_callback() is None:
            await self._transition(PayoutStatus.AWAITING_CALLBACK)
        timeout = timedelta(seconds=self._policy.callback_timeout_seconds)
        self._deadline_text = (workflow.now() + timeout).strftime("%Y-%m-%d %H:%M UTC")
        self._show(self._current.status)
        try:
            await workflow.wait_condition(lambda: self._final_callback() is not None, timeout=timeout)
        except TimeoutError:
            # No status look-up in the protocol profile (protocol.METHOD_BILLS_STATUS is None).
            self._emit("payout_timeout", reason=EscalationReason.CALLBACK_TIMEOUT.value)
            await self._escalate(EscalationReason.CALLBACK_TIMEOUT.value, "no callback within the timeout")
            return
        finally:
            self._deadline_text = ""
        callback = self._final_callback()
        assert callback is not None
        await self._apply_callback(callback)

    def _bill_failure_reason(self, err: ActivityError) -> tuple[str, str]:
        cause = err.cause
        if isinstance(cause, ApplicationError):
            if cause.type == failures.OUTCOME_UNKNOWN:
                self._outcome_unknown_round = self._round
                return EscalationReason.OUTCOME_UNKNOWN.value, cause.message
            if cause.type == failures.PERMANENT:
                code = str(cause.details[0]) if cause.details else "unknown"
                return f"{EscalationReason.PERMANENT_ERROR.value}:{code}", cause.message
            if cause.type == failures.BAD_PAYOUT_DATA:
                return f"{EscalationReason.PERMANENT_ERROR.value}:bad_payout_data", cause.message
            return EscalationReason.RETRIES_EXHAUSTED.value, cause.message
        return EscalationReason.RETRIES_EXHAUSTED.value, str(cause or err)

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
            await self._escalate(EscalationReason.REVERSED.value, "Portmone reports the payment returned", cb)
            return
        if status == BillStatus.UNKNOWN and cb.rsp_ok:
            detail = f"unknown bill status {cb.bill_status!r}"
            await self._escalate(f"{EscalationReason.PERMANENT_ERROR.value}:unknown_status", detail, cb)
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
            await self._escalate(EscalationReason.RETRIES_EXHAUSTED.value, detail, cb)
            return
        await self._escalate(f"{EscalationReason.PERMANENT_ERROR.value}:{code}", detail, cb)

    async def _complete_paid(self, cb: CallbackSignal | None, *, note: str | None = None) -> None:
        req = self._req
        topup = TopupInput(
            payout_id=self._payout_id,
            msisdn_token=req.msisdn_token,
            amount_kopecks=req.amount_kopecks,
            currency=req.currency,
        )
        try:
            await workflow.execute_activity_method(
                TelecomActivities.topup,
                topup,
                start_to_close_timeout=timedelta(seconds=30),
                schedule_to_close_timeout=timedelta(minutes=30),
                retry_policy=_TELECOM_RETRY,
                summary="telecom top-up (when configured)",
            )
        except ActivityError as err:
            await self._escalate(EscalationReason.TELECOM_FAILED.value, str(err.cause or err), cb)
            return
        await self._transition(PayoutStatus.PAID, reason=note, callback=cb)
        self._tell_user(NotifyKind.PAID)
        self._emit("payout_success")

    # ---- manual review -------------------------------------------------------------------------

    async def _escalate(self, reason: str, detail: str, cb: CallbackSignal | None = None) -> None:
        self._update(escalation_reason=reason, last_error=detail[:300])
        workflow.upsert_search_attributes([sa.ESCALATION_REASON.value_set(reason)])
        await self._transition(PayoutStatus.MANUAL_REVIEW, reason=reason, callback=cb)
        self._tell_user(NotifyKind.DELAYED)
        self._emit("payout_failure", reason=reason)

    async def _manual_review(self) -> None:
        """Wait for a person (or a late `ok` callback); remind while waiting; never close alone."""
        reminder = timedelta(seconds=self._policy.manual_reminder_seconds)
        while True:
            try:
                await workflow.wait_condition(
                    lambda: self._decision is not None or self._late_payment() is not None, timeout=reminder
                )
            except TimeoutError:
                await self._remind()
                continue
            late = self._late_payment()
            if late is not None and self._decision is None:
                self._inbox.remove(late)
                await self._record_operator_action(
                    "late_callback", "system", "late ok callback completed a payout in manual review",
                    late.bill_id, f"late-callback-{late.dedupe_key}", {},
                )
                await self._complete_paid(late, note="late_ok_callback")
                return
            await self._apply_decision()
            return

    def _late_payment(self) -> CallbackSignal | None:
        for cb in self._inbox:
            if cb.rsp_ok and parse_bill_status(cb.bill_status) == BillStatus.PAYED and cb.bill_id in self._bills:
                return cb
        return None

    async def _apply_decision(self) -> None:
        """Apply the operator's decision; the update returns once its first effect is in the ledger."""
        decision = self._decision
        try:
            if isinstance(decision, OperatorRetry):
                self._outcome_unknown_round = None
                self._update(escalation_reason=None)
                workflow.upsert_search_attributes([sa.ESCALATION_REASON.value_unset()])
                await self._start_round()
            elif isinstance(decision, OperatorMarkPaid):
                await self._transition(PayoutStatus.PAID, reason=f"operator:{decision.external_reference}")
                self._tell_user(NotifyKind.PAID)
                self._emit("payout_success", reason="operator_mark_paid")
            elif isinstance(decision, OperatorCancel):
                await self._transition(PayoutStatus.CANCELLED, reason=f"operator:{decision.reason}"[:200])
                self._tell_user(NotifyKind.CANCELLED)
                self._emit("payout_failure", reason="operator_cancel")
        finally:
            self._decision = None
        if isinstance(decision, OperatorRetry):
            await self._bill_round(started=True)

    async def _remind(self) -> None:
        try:
            await workflow.execute_activity_method(
                NotifyActivities.remind_operators,
                ReminderInput(
                    payout_id=self._payout_id,
                    receipt_id=self._req.receipt_id,
                    reason=self._current.escalation_reason or "unknown",
                ),
                task_queue=NOTIFY_TASK_QUEUE,
                start_to_close_timeout=timedelta(seconds=15),
                schedule_to_close_timeout=timedelta(minutes=2),
                retry_policy=_SIDE_EFFECT_RETRY,
                summary="remind operators: payout waits in manual review",
            )
        except ActivityError:
            workflow.logger.warning("operator reminder failed for %s", self._payout_id)

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
        workflow.set_current_details(current_details(self._current, self._deadline_text))

    async def _transition(
        self, to: PayoutStatus, *, reason: str | None = None, callback: CallbackSignal | None = None
    ) -> None:
        await workflow.execute_activity_method(
            LedgerActivities.transition,
            TransitionInput(
                payout_id=self._payout_id,
                to_status=to,
                reason=reason,
                portmone_status=callback.bill_status if callback else None,
                error_code=callback.error_code if callback else None,
                error_description=callback.error_description if callback else None,
                processed_callback_id=callback.callback_id if callback else None,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(minutes=10),
            retry_policy=_LEDGER_RETRY,
            summary=f"ledger: {to.value}",
        )
        self._show(to)

    async def _record_operator_action(
        self, action: str, operator: str, reason: str, reference: str | None, key: str, details: dict[str, str]
    ) -> None:
        await workflow.execute_activity_method(
            LedgerActivities.record_operator_action,
            OperatorActionInput(
                payout_id=self._payout_id,
                action=action,
                operator=operator,
                reason=reason,
                reference=reference,
                idempotency_key=key,
                details=details,
            ),
            start_to_close_timeout=timedelta(seconds=30),
            schedule_to_close_timeout=timedelta(minutes=10),
            retry_policy=_LEDGER_RETRY,
            summary=f"audit: operator {action}",
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
        try:
            await workflow.execute_activity_method(
                NotifyActivities.notify,
                NotifyInput(
                    telegram_id=req.telegram_id,
                    kind=kind,
                    language=req.language,
                    amount_kopecks=req.amount_kopecks,
                    message_id=message_id,
                ),
                task_queue=NOTIFY_TASK_QUEUE,
                start_to_close_timeout=timedelta(seconds=15),
                schedule_to_close_timeout=timedelta(minutes=2),
                retry_policy=_SIDE_EFFECT_RETRY,
                summary=f"tell the user: {kind.value}",
            )
        except ActivityError:
            workflow.logger.warning("telegram notification %s failed for %s", kind.value, self._payout_id)

    def _emit(self, name: str, *, reason: str | None = None) -> None:
        event = AnalyticsEvent(
            name=name,
            payout_id=self._payout_id,
            amount_kopecks=self._req.amount_kopecks,
            status=self._current.status,
            reason=reason,
        )
        self._background(self._emit_event(event))

    async def _emit_event(self, event: AnalyticsEvent) -> None:
        try:
            await workflow.execute_activity_method(
                NotifyActivities.emit_event,
                event,
                task_queue=NOTIFY_TASK_QUEUE,
                start_to_close_timeout=timedelta(seconds=10),
                schedule_to_close_timeout=timedelta(minutes=2),
                retry_policy=_SIDE_EFFECT_RETRY,
                summary=f"analytics: {event.name}",
            )
        except ActivityError:
            workflow.logger.warning("analytics event %s failed for %s", event.name, self._payout_id)

    def _background(self, coro: Awaitable[None]) -> None:
        async def run() -> None:
            await coro

        self._side_effects.append(asyncio.create_task(run()))

    async def _drain_side_effects(self) -> None:
        if self._side_effects:
            await asyncio.gather(*self._side_effects)
