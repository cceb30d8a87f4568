"""Payload models: one pydantic model per workflow, signal, update, query and activity.

They travel through Temporal with the pydantic data converter, so none of them may hold a
plaintext phone number: only `msisdn_token` (Fernet) and `masked_msisdn`.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from payouts.status import PayoutStatus
from payouts.verdicts import BillVerdict, Verdict

# ---- field bounds ------------------------------------------------------------------------------
# One definition per bound, shared by the intake body (payouts/receipt.py) and the workflow
# input (PayoutRequest below): whatever intake accepts, the ledger columns (ledger/schema.py) can
# hold on SQLite and on PostgreSQL alike. Integers fit a signed 64-bit BIGINT; strings fit their
# VARCHAR length and carry no control characters (PostgreSQL refuses NUL, SQLite would store it).
# docs/security.md ("Intake validation") lists the rules.

BIGINT_MAX = 2**63 - 1  # PostgreSQL BIGINT, SQLite INTEGER
# The visible ASCII characters, space excluded: digits, letters, punctuation (`FN1:FD2:FP3`, or the
# tax service's check URL `https://cabinet.tax.gov.ua/cashregs/check?fn=…&id=…`).
_VISIBLE_ASCII = re.compile(r"[\x21-\x7e]+")


def _whole_number(value: Any) -> Any:
    """A JSON number with a fraction or an exponent (`25.5`, `2500.0`, `1e30`) is not an integer."""
    if isinstance(value, float):
        raise PydanticCustomError(
            "int_type", "must be a JSON integer, without fraction or exponent (got {number})", {"number": repr(value)}
        )
    return value


def _no_control_characters(value: str) -> str:
    """No C0/C1 control character (NUL, newline, escape, DEL, ...): the ledger stores text, not bytes."""
    for ch in value:
        if unicodedata.category(ch) == "Cc":
            raise ValueError(f"must not contain control characters (found U+{ord(ch):04X})")
    return value


def _visible_ascii(value: str) -> str:
    if not _VISIBLE_ASCII.fullmatch(value):
        raise ValueError(
            "may hold only visible ASCII characters: letters, digits and punctuation, no spaces or control characters"
        )
    return value


def _representable_in_utc(value: datetime) -> datetime:
    """An aware time whose UTC form exists (`0001-01-01T00:00:00+05:00` has none)."""
    if value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError("time is out of range once converted to UTC") from None
    return value


ReceiptId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")]
# Telegram user id; ledger `telegram_id BIGINT`.
TelegramId = Annotated[int, BeforeValidator(_whole_number), Field(gt=0, le=BIGINT_MAX, strict=True)]
Kopecks = Annotated[int, BeforeValidator(_whole_number), Field(gt=0, le=10_000_000, strict=True)]
Currency = Literal["UAH"]
# Ledger `payee_id VARCHAR(64)`; also sent to Portmone as `payeeId`.
PayeeId = Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")]
# Ledger `fiscal_key VARCHAR(256)` (unique): at most 128 visible ASCII characters.
FiscalKey = Annotated[str, StringConstraints(min_length=1, max_length=128), AfterValidator(_visible_ascii)]
# A Fernet token (URL-safe base64); travels through Temporal, never stored in the ledger.
MsisdnToken = Annotated[str, StringConstraints(min_length=10, max_length=1024, pattern=r"^[A-Za-z0-9_=-]+$")]
# A phone as the bot sends it (`+380 67 123-45-67`), normalised at intake.
PhoneInput = Annotated[str, StringConstraints(max_length=32), AfterValidator(_no_control_characters)]
# Ledger `masked_msisdn VARCHAR(32)` and `user_key VARCHAR(128)`: derived at intake, bounded anyway.
MaskedMsisdn = Annotated[str, StringConstraints(max_length=32), AfterValidator(_no_control_characters)]
UserKey = Annotated[str, StringConstraints(min_length=16, max_length=128), AfterValidator(_no_control_characters)]
AcceptedAt = Annotated[datetime, AfterValidator(_representable_in_utc)]
# An ISO 8601 date and time with a time zone, as the intake contract writes it: `2026-11-27T10:00:00+02:00`,
# `2026-11-27T10:00:00.123Z`, `2026-11-27T10:00+0200`.
_ISO_8601_ZONED = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]{1,9})?)?(?:Z|[+-][0-9]{2}:?[0-9]{2})"
)
# Named without digits, so the message survives the redaction of a refusal's detail (docs/queue.md).
_ZONED_FORM = "YYYY-MM-DDThh:mm:ss+hh:mm, or Z for UTC"


def _iso_8601_with_zone(value: Any) -> Any:
    """Only the text of an ISO 8601 date and time with a time zone (or an aware datetime, which no
    JSON body can hold): pydantic alone would also take a number or a string of digits as seconds
    since 1970, a date alone, or a time without a zone."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise PydanticCustomError("timezone_aware", f"must carry a time zone ({_ZONED_FORM})")
        return value
    if not isinstance(value, str):
        raise PydanticCustomError(
            "datetime_type", f"must be a string: an ISO 8601 date and time with a time zone ({_ZONED_FORM})"
        )
    if not _ISO_8601_ZONED.fullmatch(value):
        raise PydanticCustomError(
            "iso_8601", f"must be an ISO 8601 date and time with a time zone ({_ZONED_FORM})"
        )
    return value


# `accepted_at` as the bot sends it (the HTTP intake and the queue share it): strictly the text above.
AcceptedAtInput = Annotated[AcceptedAt, BeforeValidator(_iso_8601_with_zone)]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def payout_workflow_id(receipt_id: str) -> str:
    """Workflow id and ledger payout id: `payout-{receipt_id}`; holds no personal data."""
    return f"payout-{receipt_id}"


_COMMENT_PREFIX = "DarnitsaCashBot receipt "


def bill_comment(receipt_id: str) -> str:
    """The `comment` of a payout's Portmone bill; Portmone echoes it in callbacks."""
    return f"{_COMMENT_PREFIX}{receipt_id}"


def receipt_in_comment(comment: str | None) -> str | None:
    """The receipt id a bill comment names (the inverse of `bill_comment`), or None."""
    if not comment or not comment.startswith(_COMMENT_PREFIX):
        return None
    return comment[len(_COMMENT_PREFIX) :] or None


class EscalationReason(StrEnum):
    CALLBACK_TIMEOUT = "callback_timeout"
    OUTCOME_UNKNOWN = "outcome_unknown"
    PERMANENT_ERROR = "permanent_error"  # shown as permanent_error:<code>
    RETRIES_EXHAUSTED = "retries_exhausted"
    TELECOM_FAILED = "telecom_failed"
    REVERSED = "reversed"
    CANCELLATION_REQUESTED = "cancellation_requested"  # a Temporal cancel (Web UI button) reached the payout
    STATE_CONFLICT = "state_conflict"  # the ledger refused the workflow's next status (a reset, a bug)


# ---- workflow input -------------------------------------------------------------------------


class PayoutRequest(_Model):
    """ReceiptPayoutWorkflow's input: an accepted receipt, the phone already encrypted."""

    receipt_id: ReceiptId
    telegram_id: TelegramId
    msisdn_token: MsisdnToken
    masked_msisdn: MaskedMsisdn
    # Keyed HMAC of the phone (payouts.msisdn.MsisdnVault.digest): per-user limits without the phone.
    user_key: UserKey
    amount_kopecks: Kopecks
    currency: Currency = "UAH"
    payee_id: PayeeId | None = None
    fiscal_key: FiscalKey | None = None
    accepted_at: AcceptedAt
    language: Literal["uk", "en"] = "uk"


# ---- signal, query, updates -----------------------------------------------------------------


class CallbackSignal(_Model):
    """What the webhook signals after it stored a Portmone callback (phone stripped)."""

    callback_id: int
    dedupe_key: str
    bill_id: str
    rsp_ok: bool
    bill_status: str  # portmone.protocol.BillStatus value
    error_code: str | None = None
    error_description: str | None = None
    # What the callback means (portmone converts); None in signals sent before verdicts existed.
    verdict: Verdict | None = None

    def error_text(self) -> str:
        """Portmone's error as shown to operators (`last_error`)."""
        return f"Portmone: {self.error_code or 'none'} {self.error_description or ''}".strip()

    @classmethod
    def from_stored(cls, stored: Any) -> CallbackSignal:
        """From a ledger CallbackRecord (duck-typed: payouts does not import the ledger)."""
        return cls(
            callback_id=stored.id,
            dedupe_key=stored.dedupe_key,
            bill_id=stored.bill_id or "",
            rsp_ok=stored.rsp_status == "ok",
            bill_status=stored.bill_status or "UNKNOWN",
            error_code=stored.error_code,
            error_description=stored.error_description,
            verdict=Verdict(stored.verdict) if stored.verdict else None,
        )


class PayoutView(_Model):
    """The `status` query's answer: no phone beyond the masked form."""

    payout_id: str
    receipt_id: str
    status: PayoutStatus
    amount_kopecks: int
    currency: str
    masked_msisdn: str
    bill_id: str | None = None
    bill_round: int = 0
    last_error: str | None = None
    escalation_reason: str | None = None
    rejection_reason: str | None = None
    callbacks_seen: int = 0
    escalated_at: datetime | None = None  # when the payout last entered MANUAL_REVIEW
    reminders_sent: int = 0  # operator reminders while in MANUAL_REVIEW this time
    # The earlier bills that may hold money (the new-bill rule's evidence at escalation): while any is
    # listed, `retry` and `cancel` need `confirmed_no_bill_at_portmone`.
    open_bills: list[str] = Field(default_factory=list)
    cancel_requested: bool = False  # a Temporal cancellation was asked for; an operator decides

    @classmethod
    def of(cls, request: PayoutRequest, progress: PayoutProgress) -> PayoutView:
        """The view of a payout: its request and what it knows now (the one copy of each fact)."""
        p = progress
        return cls(
            payout_id=payout_workflow_id(request.receipt_id),
            receipt_id=request.receipt_id,
            status=p.status,
            amount_kopecks=request.amount_kopecks,
            currency=request.currency,
            masked_msisdn=request.masked_msisdn,
            bill_id=p.bill_id,
            bill_round=p.bill_round,
            last_error=p.last_error,
            escalation_reason=p.escalation_reason,
            rejection_reason=p.rejection_reason,
            callbacks_seen=len(p.seen_callbacks),
            escalated_at=p.escalated_at,
            reminders_sent=p.reminders_sent,
            open_bills=[bill.text for bill in p.open_bills],
            cancel_requested=p.cancel_requested,
        )


# ---- activities -----------------------------------------------------------------------------


class ReserveInput(_Model):
    # Also who holds the reservation: the workflow id is the payout id, so a reset or continued run is the
    # same payout asking again, not a duplicate.
    payout_id: str
    request: PayoutRequest
    # When we received the receipt (the workflow carries it in): eligibility and the business day are
    # decided against it, so a re-run of the reservation decides as the first run did.
    received_at: datetime


class ReserveOutput(_Model):
    accepted: bool
    reason: str | None = None
    # The ledger row's status now: RESERVED for a new payout; later ones when the workflow was reset.
    status: PayoutStatus | None = None


class CreateBillInput(_Model):
    payout_id: str
    receipt_id: str
    telegram_id: int
    msisdn_token: str
    amount_kopecks: int
    currency: str
    payee_id: str | None
    round_no: int


class OpenBillView(_Model):
    """One earlier attempt whose bill may hold money (ledger.OpenBill, for the workflow)."""

    attempt_id: int
    bill_id: str | None
    verdict: BillVerdict
    text: str
    # What the ledger knew of this attempt when it listed it: an operator's confirmation names it, and
    # any later evidence (an answer, a bill id learnt by echo, a callback) voids the confirmation.
    evidence: str = ""


class BillConfirmation(_Model):
    """An operator's "Portmone holds no bill that can still be paid" for one attempt, as it was shown."""

    attempt_id: int
    evidence: str


class EscalateInput(_Model):
    payout_id: str
    reason: str
    # Used instead of `reason` when the ledger shows an earlier bill that may hold money.
    reason_if_bill_open: str | None = None
    callback: CallbackSignal | None = None


class EscalateOutput(_Model):
    reason: str
    open_bills: list[OpenBillView] = Field(default_factory=list)


class LedgerStateOutput(_Model):
    """The payout as the ledger holds it, with the evidence a run needs to follow it (after a Reset, or
    when the ledger refused the workflow's next step): its bills, the bills that may hold money, the
    callbacks no step has taken into account, and a paid one, if any bill was paid."""

    status: PayoutStatus
    reason: str | None = None
    since: datetime | None = None  # when the payout entered its status
    bill_id: str | None = None
    bill_round: int = 0  # the highest round an attempt was written for
    bills: list[str] = Field(default_factory=list)
    open_bills: list[OpenBillView] = Field(default_factory=list)
    unprocessed: list[CallbackSignal] = Field(default_factory=list)
    paid: CallbackSignal | None = None


class CreateBillOutput(_Model):
    bill_id: str
    adopted: bool = False  # an earlier attempt of this round already holds a bill
    early_callbacks: list[CallbackSignal] = Field(default_factory=list)


class TransitionInput(_Model):
    payout_id: str
    to_status: PayoutStatus
    reason: str | None = None
    # The callback that decided this step: its status and error are recorded with it, and it is
    # marked processed.
    callback: CallbackSignal | None = None
    # The bill the move is about, when no callback names it (an operator's mark_paid naming a bill of
    # the payout as its reference).
    bill_id: str | None = None


class ReminderInput(_Model):
    payout_id: str
    receipt_id: str
    reason: str
    amount_kopecks: int = 0
    reminder_no: int = 1  # 1 for the first reminder of this stay in manual review


class NotifyKind(StrEnum):
    PROCESSING = "processing"
    PAID = "paid"
    FAILED = "failed"
    DELAYED = "delayed"  # sent to manual review: a person will look
    CANCELLED = "cancelled"
    REJECTED = "rejected"


class TopupInput(_Model):
    payout_id: str
    msisdn_token: str
    amount_kopecks: int
    currency: str


class TopupOutput(_Model):
    configured: bool
    topup_id: str | None = None


class AnalyticsEvent(_Model):
    name: Literal["payout_initiated", "payout_success", "payout_failure", "payout_timeout"]
    payout_id: str
    amount_kopecks: int
    status: PayoutStatus
    reason: str | None = None
    # The payout event it reports (payouts.events), when it came through the outbox: consumers drop repeats.
    event_id: str | None = None


class PayoutPolicy(_Model):
    """Timing knobs the starter copies from settings into the workflow input (workflows read no env)."""

    callback_timeout_seconds: int = Field(default=3600, ge=1)
    max_bill_rounds: int = Field(default=3, ge=1)
    retry_backoff_seconds: int = Field(default=300, ge=1)
    manual_reminder_seconds: int = Field(default=4 * 3600, ge=1)
    # One bills.create attempt; above the Portmone call's total budget plus the ledger writes
    # (runtime.settings.bill_attempt_timing_problem). A worker that dies mid-call is noticed
    # after this long, and the retry then finds the unfinished attempt.
    bill_attempt_timeout_seconds: int = Field(default=90, ge=1)
    # Reminders in one run of a payout waiting in manual review; then it continues as new, so its
    # history stays bounded however long a person takes.
    reminders_per_run: int = Field(default=50, ge=1)


class PayoutProgress(BaseModel):
    """What one payout knows between its steps, each fact once: the workflow changes it, the `status`
    view is derived from it (`PayoutView.of`), and a payout that continues as new carries it whole."""

    model_config = ConfigDict(extra="forbid")

    status: PayoutStatus = PayoutStatus.RECEIVED
    bill_id: str | None = None  # the current bill; once PAID, the bill that paid
    bill_round: int = 0
    bills: list[str] = Field(default_factory=list)  # every bill of this payout the workflow has seen
    inbox: list[CallbackSignal] = Field(default_factory=list)  # received, not acted on yet
    seen_callbacks: list[str] = Field(default_factory=list)  # dedupe keys, in the order received
    # The new-bill rule's evidence at the last escalation: earlier bills that may hold money.
    open_bills: list[OpenBillView] = Field(default_factory=list)
    # The paid callback of a payout whose telecom top-up failed: `retry` repeats only the top-up.
    paid_callback: CallbackSignal | None = None
    last_error: str | None = None
    escalation_reason: str | None = None
    rejection_reason: str | None = None
    escalated_at: datetime | None = None
    reminders_sent: int = 0
    cancel_requested: bool = False
    results: dict[str, OperatorResult] = Field(default_factory=dict)  # operator decisions' answers by update id


class PayoutWorkflowInput(_Model):
    request: PayoutRequest
    received_at: datetime  # when the intake took the receipt (decides eligibility, once)
    policy: PayoutPolicy = Field(default_factory=PayoutPolicy)
    carried: PayoutProgress | None = None  # set when a run continues as new


# ---- operator updates -----------------------------------------------------------------------


class OperatorRetry(_Model):
    """Fields are checked by the update validator, which names what is missing."""

    operator: str = Field(default="", max_length=64)
    reason: str = Field(default="", max_length=500)
    # Required while an earlier bill may hold money (the view lists them in `open_bills`): the operator
    # checked Portmone's cabinet, and Portmone holds no such bill, or it is unpaid and cancelled there.
    confirmed_no_bill_at_portmone: bool = False


class OperatorMarkPaid(_Model):
    operator: str = Field(default="", max_length=64)
    reason: str = Field(default="", max_length=500)
    external_reference: str = Field(default="", max_length=128)


class OperatorCancel(_Model):
    operator: str = Field(default="", max_length=64)
    reason: str = Field(default="", max_length=500)
    # As for retry: a bill that may still be paid must be cancelled at Portmone before the payout is.
    confirmed_no_bill_at_portmone: bool = False


class OperatorActionInput(_Model):
    payout_id: str
    action: Literal["retry", "mark_paid", "cancel", "late_callback", "cancellation_requested"]
    operator: str
    reason: str | None = None
    reference: str | None = None
    idempotency_key: str
    details: dict[str, str] = Field(default_factory=dict)
    # Bill attempts the operator confirmed hold no money, as they were shown (recorded with the audit row;
    # an attempt whose evidence changed since is not confirmed).
    confirms: list[BillConfirmation] = Field(default_factory=list)


class OperatorActionOutput(_Model):
    """The bills that may still hold money once an audit row and its confirmations are written: an attempt
    the operator confirmed that is still listed had new evidence since it was shown."""

    open_bills: list[OpenBillView] = Field(default_factory=list)


class OperatorResult(_Model):
    """An update's answer. `accepted=False`: the decision was recorded but overtaken (a late `ok`
    callback completed the payout first); `message` says what happened instead."""

    accepted: bool
    status: PayoutStatus
    message: str
    update_id: str = ""


# ---- scheduled maintenance ------------------------------------------------------------------


class ReconcileInput(_Model):
    """ReconciliationWorkflow's input; without a day it reports on the business day (Kyiv) it runs in."""

    report_day: date | None = None


class ReconcileRequest(_Model):
    report_day: date


class ReconcileOutput(_Model):
    report_day: date
    cutoff: datetime
    counts: dict[str, int]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


class RetentionOutput(_Model):
    retention_days: int
    older_than: datetime
    deleted: int


# These name models defined after them (PayoutProgress, OperatorResult): complete them now, while this
# module's names resolve, so no caller (the workflow sandbox included) meets a half-built model.
PayoutView.model_rebuild()
PayoutProgress.model_rebuild()
PayoutWorkflowInput.model_rebuild()
