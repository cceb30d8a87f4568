"""Frozen values the ledger API takes and returns (no SQLAlchemy types leak out)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

from payouts.events import PayoutEvent
from payouts.status import PayoutStatus

Language = Literal["uk", "en"]
AttemptState = Literal["prepared", "answered", "not_sent", "unknown"]
ATTEMPT_STATES: tuple[AttemptState, ...] = ("prepared", "answered", "not_sent", "unknown")


@dataclass(frozen=True)
class PayoutRecord:
    id: str
    receipt_id: str
    fiscal_key: str | None
    user_key: str
    masked_msisdn: str
    telegram_id: int
    language: Language
    telegram_message_id: int | None
    amount_kopecks: int
    currency: str
    payee_id: str | None
    status: PayoutStatus
    reason: str | None
    owner: str
    business_day: date
    bill_id: str | None
    portmone_status: str | None
    error_code: str | None
    error_description: str | None
    created_at: datetime
    updated_at: datetime
    row_version: int


@dataclass(frozen=True)
class StatusChangeRecord:
    id: int
    payout_id: str
    from_status: PayoutStatus | None  # None: the row was created with `to_status`
    to_status: PayoutStatus
    reason: str | None
    created_at: datetime


@dataclass(frozen=True)
class AttemptRecord:
    id: int
    payout_id: str
    round_no: int
    attempt_no: int
    state: AttemptState
    bill_id: str | None
    error_code: str | None
    detail: str | None
    prepared_at: datetime
    finished_at: datetime | None
    confirmed_by: int | None = None  # the operator action that confirmed this attempt's bill holds no money


@dataclass(frozen=True)
class CallbackRecord:
    id: int
    dedupe_key: str
    bill_id: str | None
    payout_id: str | None
    raw_body: str
    rsp_status: str | None
    bill_status: str | None
    error_code: str | None
    error_description: str | None
    received_at: datetime
    routed_at: datetime | None
    processed_at: datetime | None
    signalled_at: datetime | None = None
    verdict: str | None = None  # payouts.verdicts.Verdict value


BillVerdict = Literal["paid", "live", "no_ending", "unknown"]


@dataclass(frozen=True)
class OpenBill:
    """One reason the new-bill rule refuses a new bill: an attempt whose bill may hold money.

    `verdict`: `paid` (a stored callback says Portmone paid it; nothing overrides that), `live` (a bill
    exists with no final non-paid callback), `no_ending` (the attempt was written and never finished:
    the worker stopped mid-call), `unknown` (the request may have reached Portmone unanswered).
    """

    attempt_id: int
    round_no: int
    attempt_no: int
    bill_id: str | None
    verdict: BillVerdict

    def describe(self) -> str:
        bill = f"bill {self.bill_id}" if self.bill_id else "no bill id known"
        what = {
            "paid": "PAID at Portmone (stored callback)",
            "live": "created, no final callback",
            "no_ending": "request sent or about to be, no recorded ending",
            "unknown": "request may have reached Portmone, no answer",
        }[self.verdict]
        return f"round {self.round_no} attempt {self.attempt_no}: {bill}: {what}"


@dataclass(frozen=True)
class StoreCallbackResult:
    callback: CallbackRecord
    inserted: bool  # False: the same body was stored before (a Portmone retry)
    payout_id: str | None  # the route, when the bill id is known


@dataclass(frozen=True)
class ReserveRequest:
    payout_id: str
    receipt_id: str
    fiscal_key: str | None
    user_key: str
    masked_msisdn: str
    telegram_id: int
    amount_kopecks: int
    currency: str
    payee_id: str | None
    owner: str
    business_day: date
    user_daily_limit: int
    daily_budget_kopecks: int
    max_payout_kopecks: int
    language: Language = "uk"  # of the user's messages


@dataclass(frozen=True)
class ReserveResult:
    accepted: bool
    payout_id: str
    status: PayoutStatus
    reason: str | None
    replay: bool  # True: the same owner asked before; this is the stored answer


@dataclass(frozen=True)
class OperatorActionRecord:
    id: int
    payout_id: str
    action: str
    operator: str
    reason: str | None
    reference: str | None
    details: dict[str, Any] | None
    idempotency_key: str | None
    created_at: datetime


@dataclass(frozen=True)
class ExchangeRecord:
    id: int
    created_at: datetime
    method: str
    request_redacted: dict[str, str]
    response_body: str | None
    http_status: int | None
    outcome: str
    elapsed_ms: int
    receipt_id: str | None
    payout_id: str | None
    bill_id: str | None
    telegram_id: int | None


@dataclass(frozen=True)
class OutboxDelivery:
    """One event claimed for one channel: deliver it, then report `delivered` or `failed`."""

    outbox_id: int
    channel: str
    attempts: int  # failed attempts before this one
    event: PayoutEvent


@dataclass(frozen=True)
class OutboxBacklog:
    """A channel's undelivered events: how many, and when the oldest happened."""

    channel: str
    pending: int
    oldest_at: datetime | None
