"""What one payout workflow holds between its steps, and the pure questions the story asks of it.

No Temporal calls here except reading the workflow clock where a field records a time: the
workflow (workflows/receipt_payout.py) decides, this module remembers.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from payouts import failures
    from payouts.escalation import reason_text
    from payouts.models import (
        CallbackSignal,
        CreateBillInput,
        EscalationReason,
        OpenBillView,
        OperatorCancel,
        OperatorMarkPaid,
        OperatorResult,
        OperatorRetry,
        PayoutPolicy,
        PayoutProgress,
        PayoutRequest,
        PayoutView,
        PayoutWorkflowInput,
        ReminderInput,
        TopupInput,
        payout_workflow_id,
    )
    from payouts.status import PayoutStatus
    from payouts.verdicts import FINAL, Verdict

# Update answers kept across continue-as-new (a client retry of an older update id gets its answer).
KEPT_RESULTS = 100

Decision = OperatorRetry | OperatorMarkPaid | OperatorCancel


def verdict_of(cb: CallbackSignal) -> Verdict:
    """The callback's domain verdict; a signal without one is unknown (a person looks)."""
    return cb.verdict if cb.verdict is not None else Verdict.UNKNOWN


@dataclass
class PayoutState:
    """The payout's request and policy, what it knows (`progress`: the one copy of each fact, carried whole
    into the next run), and what only this run holds: an operator decision on its way, a cancellation
    request not yet handled, the reminders of this run, the Web UI's deadline phrase."""

    request: PayoutRequest
    policy: PayoutPolicy
    received_at: datetime  # when the intake took the receipt: eligibility is decided against it, once
    progress: PayoutProgress
    # Set while the service itself settles the payout (a late paid callback, its top-up): operator
    # decisions are refused meanwhile, with this reason.
    settling: str | None = None
    # Operator decisions: `claim` is the update id being applied (set before the handler's first await,
    # so a second update is refused by the validator); `decision` is ready to apply once its audit row is
    # written; answers land in `progress.results`.
    claim: str | None = None
    decision: Decision | None = None
    cancel_pending: bool = False  # a Temporal cancellation reached the payout and is not handled yet
    reminders_this_run: int = 0
    unrecorded_rounds: int = 0  # bill rounds in a row whose attempt the ledger could not record
    deadline_text: str = ""  # the Web UI's "next deadline" phrase

    @classmethod
    def begin(cls, inp: PayoutWorkflowInput) -> PayoutState:
        progress = inp.carried or PayoutProgress()
        return cls(request=inp.request, policy=inp.policy, received_at=inp.received_at, progress=progress)

    @property
    def view(self) -> PayoutView:
        return PayoutView.of(self.request, self.progress)

    @property
    def payout_id(self) -> str:
        return payout_workflow_id(self.request.receipt_id)

    @property
    def status(self) -> PayoutStatus:
        return self.progress.status

    @property
    def results(self) -> dict[str, OperatorResult]:
        return self.progress.results

    def receive(self, cb: CallbackSignal) -> None:
        """Keep a callback once (signals, early callbacks and re-read stored ones may repeat)."""
        p = self.progress
        if cb.dedupe_key in p.seen_callbacks:
            return
        p.seen_callbacks.append(cb.dedupe_key)
        p.inbox.append(cb)

    def take(self, cb: CallbackSignal) -> Verdict:
        """Remove a callback from the inbox to act on it; remember its bill (its answer may have been lost)."""
        self.progress.inbox.remove(cb)
        self.know_bill(cb.bill_id)
        return verdict_of(cb)

    def know_bill(self, bill_id: str | None) -> None:
        if bill_id and bill_id not in self.progress.bills:
            self.progress.bills.append(bill_id)

    def paid(self) -> CallbackSignal | None:
        """A stored callback saying one of this payout's bills was paid (the ledger routes only our bills)."""
        return next((cb for cb in self.progress.inbox if verdict_of(cb) == Verdict.PAID), None)

    def deciding_callback(self) -> CallbackSignal | None:
        """The callback that decides the current round: any paid one, else a final one for the current bill."""
        paid = self.paid()
        if paid is not None:
            return paid
        current = self.progress.bill_id
        return next((cb for cb in self.progress.inbox if cb.bill_id == current and verdict_of(cb) in FINAL), None)

    def answer(self, update_id: str, accepted: bool, message: str) -> None:
        self.results[update_id] = OperatorResult(
            accepted=accepted, status=self.status, message=message, update_id=update_id
        )
        self.decision = None
        self.claim = None

    def bill_input(self) -> CreateBillInput:
        req = self.request
        return CreateBillInput(
            payout_id=self.payout_id,
            receipt_id=req.receipt_id,
            telegram_id=req.telegram_id,
            msisdn_token=req.msisdn_token,
            amount_kopecks=req.amount_kopecks,
            currency=req.currency,
            payee_id=req.payee_id,
            round_no=self.progress.bill_round,
        )

    def topup_input(self) -> TopupInput:
        req = self.request
        return TopupInput(
            payout_id=self.payout_id, msisdn_token=req.msisdn_token, amount_kopecks=req.amount_kopecks,
            currency=req.currency,
        )  # fmt: skip

    def reminder_input(self) -> ReminderInput:
        return ReminderInput(
            payout_id=self.payout_id,
            receipt_id=self.request.receipt_id,
            reason=self.progress.escalation_reason or "unknown",
            amount_kopecks=self.request.amount_kopecks,
            reminder_no=self.progress.reminders_sent,
        )

    def live_bills(self) -> list[OpenBillView]:
        """The listed bills that may still be paid (an operator confirms Portmone holds none of them)."""
        return [b for b in self.progress.open_bills if b.verdict != "paid"]

    def paid_bill(self) -> str | None:
        """A bill of this payout that Portmone paid, as far as this run knows (its callback is stored)."""
        p = self.progress
        if (late := self.paid()) is not None:
            return late.bill_id
        if p.paid_callback is not None:
            return p.paid_callback.bill_id
        return next((b.bill_id or "?" for b in p.open_bills if b.verdict == "paid"), None)

    def next_run(self) -> PayoutWorkflowInput:
        """The input of this payout's next run (continue-as-new): its progress, passed whole."""
        p = self.progress
        p.results = dict(list(p.results.items())[-KEPT_RESULTS:])
        return PayoutWorkflowInput(request=self.request, policy=self.policy, received_at=self.received_at, carried=p)


@dataclass(frozen=True)
class Escalation:
    """Why a payout goes to a person: the reason, what happened, and the reason to use instead when the
    ledger shows an earlier bill that may hold money (`outcome_unknown`)."""

    reason: str
    detail: str
    if_bill_open: str | None = None

    @classmethod
    def of(cls, kind: EscalationReason, detail: str) -> Escalation:
        return cls(reason_text(kind), detail)


# How a failed step reaches the workflow: ActivityError from an activity, the ApplicationError itself
# from a local activity (the ledger steps).
STEP_FAILED = (ActivityError, ApplicationError)


def failure_type(err: BaseException) -> str:
    cause = err.cause if isinstance(err, ActivityError) else err
    if isinstance(cause, ApplicationError) and cause.type:
        return cause.type
    return type(cause).__name__


def bill_failure(err: ActivityError) -> Escalation | None:
    """bills.create gave no bill: why a person must look, or None when nothing was sent because the ledger
    was down (the round is asked again). Whether an earlier bill may hold money is the ledger's call (the
    escalation reads it): a lost last attempt is `outcome_unknown`, never `retries_exhausted`."""
    cause = err.cause
    kind = cause.type if isinstance(cause, ApplicationError) else None
    if kind == failures.ATTEMPT_NOT_RECORDED:
        return None
    message = cause.message if isinstance(cause, ApplicationError) else str(cause or err)
    unknown = reason_text(EscalationReason.OUTCOME_UNKNOWN)
    if kind == failures.PERMANENT:
        code = str(cause.details[0]) if isinstance(cause, ApplicationError) and cause.details else "unknown"
        return Escalation(reason_text(EscalationReason.PERMANENT_ERROR, code), message, unknown)
    if kind == failures.BAD_PAYOUT_DATA:
        return Escalation(reason_text(EscalationReason.PERMANENT_ERROR, "bad_payout_data"), message, unknown)
    if kind in (failures.OUTCOME_UNKNOWN, failures.BILL_MAY_BE_LIVE):
        return Escalation(unknown, message)
    # Transient refusals or timeouts until the retries ran out, or a ledger write that failed after the
    # send: the ledger knows whether a bill may exist.
    return Escalation(reason_text(EscalationReason.RETRIES_EXHAUSTED), message, unknown)


def declined(cb: CallbackSignal, verdict: Verdict, *, rounds_left: bool) -> Escalation | None:
    """A callback that did not pay: None when a new round may follow (transient, rounds left), else why
    a person must look."""
    if verdict == Verdict.REVERSED:
        return Escalation(reason_text(EscalationReason.REVERSED), "Portmone reports the payment returned")
    if verdict == Verdict.UNKNOWN:
        return Escalation(reason_text(EscalationReason.PERMANENT_ERROR, "unknown_status"), "unknown bill status")
    if verdict == Verdict.DECLINED_TRANSIENT:
        return None if rounds_left else Escalation(reason_text(EscalationReason.RETRIES_EXHAUSTED), cb.error_text())
    return Escalation(reason_text(EscalationReason.PERMANENT_ERROR, cb.error_code or "none"), cb.error_text())
