"""What one payout workflow holds between its steps, and the pure questions the story asks of it.

No Temporal calls here except reading the workflow clock where a field records a time: the
workflow (workflows/receipt_payout.py) decides, this module remembers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from temporalio import workflow
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from payouts import failures
    from payouts.escalation import reason_text
    from payouts.models import (
        CallbackSignal,
        CarriedPayout,
        CreateBillInput,
        EscalationReason,
        OpenBillView,
        OperatorCancel,
        OperatorMarkPaid,
        OperatorResult,
        OperatorRetry,
        PayoutPolicy,
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
    """The callback's domain verdict; a signal without one (stored before verdicts existed) is unknown."""
    return cb.verdict if cb.verdict is not None else Verdict.UNKNOWN


@dataclass
class PayoutState:
    request: PayoutRequest
    policy: PayoutPolicy
    view: PayoutView
    inbox: list[CallbackSignal] = field(default_factory=list)
    seen_callbacks: set[str] = field(default_factory=set)
    bills: list[str] = field(default_factory=list)
    bill_round: int = 0
    # The new-bill rule's evidence from the last escalation: earlier bills that may hold money.
    open_bills: list[OpenBillView] = field(default_factory=list)
    # The paid callback of a payout whose telecom top-up failed: `retry` repeats only the top-up.
    paid_callback: CallbackSignal | None = None
    # Operator decisions: `claim` is the update id being applied (set before the handler's first await,
    # so a second update is refused by the validator); `decision` is ready to apply once its audit row is
    # written; `results` holds every finished decision's answer by update id.
    claim: str | None = None
    decision: Decision | None = None
    results: dict[str, OperatorResult] = field(default_factory=dict)
    cancel_pending: bool = False  # a Temporal cancellation reached the payout and is not handled yet
    reminders_this_run: int = 0
    deadline_text: str = ""  # the Web UI's "next deadline" phrase

    @classmethod
    def begin(cls, inp: PayoutWorkflowInput) -> PayoutState:
        req = inp.request
        carried = inp.carried
        if carried is not None:
            return cls(
                request=req,
                policy=inp.policy,
                view=carried.view,
                inbox=list(carried.inbox),
                seen_callbacks=set(carried.seen_callbacks),
                bills=list(carried.bills),
                bill_round=carried.bill_round,
                open_bills=list(carried.open_bills),
                paid_callback=carried.paid_callback,
                results=dict(carried.results),
            )
        view = PayoutView(
            payout_id=payout_workflow_id(req.receipt_id),
            receipt_id=req.receipt_id,
            status=PayoutStatus.RECEIVED,
            amount_kopecks=req.amount_kopecks,
            currency=req.currency,
            masked_msisdn=req.masked_msisdn,
        )
        return cls(request=req, policy=inp.policy, view=view)

    @property
    def payout_id(self) -> str:
        return self.view.payout_id

    @property
    def status(self) -> PayoutStatus:
        return self.view.status

    def update(self, **fields: object) -> None:
        self.view = self.view.model_copy(update=fields)

    def receive(self, cb: CallbackSignal) -> None:
        """Keep a callback once (signals, early callbacks and re-read stored ones may repeat)."""
        if cb.dedupe_key in self.seen_callbacks:
            return
        self.seen_callbacks.add(cb.dedupe_key)
        self.inbox.append(cb)
        self.update(callbacks_seen=len(self.seen_callbacks))

    def take(self, cb: CallbackSignal) -> Verdict:
        """Remove a callback from the inbox to act on it; remember its bill (its answer may have been lost)."""
        self.inbox.remove(cb)
        if cb.bill_id and cb.bill_id not in self.bills:
            self.bills.append(cb.bill_id)
        return verdict_of(cb)

    def paid(self) -> CallbackSignal | None:
        """A stored callback saying one of this payout's bills was paid (the ledger routes only our bills)."""
        return next((cb for cb in self.inbox if verdict_of(cb) == Verdict.PAID), None)

    def deciding_callback(self) -> CallbackSignal | None:
        """The callback that decides the current round: any paid one, else a final one for the current bill."""
        paid = self.paid()
        if paid is not None:
            return paid
        current = self.view.bill_id
        return next((cb for cb in self.inbox if cb.bill_id == current and verdict_of(cb) in FINAL), None)

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
            round_no=self.bill_round,
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
            reason=self.view.escalation_reason or "unknown",
            amount_kopecks=self.request.amount_kopecks,
            reminder_no=self.view.reminders_sent,
        )

    def live_bills(self) -> list[OpenBillView]:
        return [b for b in self.open_bills if b.verdict != "paid"]

    def carried(self) -> CarriedPayout:
        kept = dict(list(self.results.items())[-KEPT_RESULTS:])
        return CarriedPayout(
            view=self.view,
            inbox=list(self.inbox),
            seen_callbacks=sorted(self.seen_callbacks),
            bills=list(self.bills),
            bill_round=self.bill_round,
            open_bills=list(self.open_bills),
            paid_callback=self.paid_callback,
            results=kept,
        )


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
