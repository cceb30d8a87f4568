"""Frozen values the ledger API takes and returns (no SQLAlchemy types leak out), and `to_record`, the
one way a row becomes one of them."""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar, cast

import sqlalchemy as sa
from pydantic import BaseModel

from payouts.events import PayoutEvent
from payouts.status import PayoutStatus
from payouts.verdicts import BillVerdict

if TYPE_CHECKING:
    from _typeshed import DataclassInstance

R = TypeVar("R")

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
    confirmed_evidence: str | None = None  # what that confirmation answered (ledger.attempts.evidence_of)


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
    evidence: str = ""  # what the ledger knows of the attempt now; a confirmation must name it
    voided: bool = False  # an operator confirmed it, and later evidence voided that confirmation

    def describe(self) -> str:
        bill = f"bill {self.bill_id}" if self.bill_id else "no bill id known"
        what = {
            "paid": "PAID at Portmone (stored callback)",
            "live": "created, no final callback",
            "no_ending": "request sent or about to be, no recorded ending",
            "unknown": "request may have reached Portmone, no answer",
        }[self.verdict]
        voided = "; an operator's confirmation was voided by later evidence" if self.voided else ""
        return f"round {self.round_no} attempt {self.attempt_no}: {bill}: {what}{voided}"


@dataclass(frozen=True)
class StoreCallbackResult:
    callback: CallbackRecord
    inserted: bool  # False: the same body was stored before (a Portmone retry)
    payout_id: str | None  # the route, when the bill id is known
    # When the ledger recorded Portmone's bills.create answer for this bill (the callback-latency
    # metric's start); None for a repeat, or when the callback came before the answer.
    bill_answered_at: datetime | None = None


@dataclass(frozen=True)
class Eligibility:
    """The gate's time rule, decided against the time the payout's workflow carries in (`decided_at`, when
    the intake took the receipt), so a re-run decides as the first run did."""

    accepted_at: datetime
    decided_at: datetime
    window: timedelta
    clock_skew: timedelta = timedelta(minutes=5)


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
    eligibility: Eligibility | None = None  # checked before the limits; an ineligible receipt is REJECTED


@dataclass(frozen=True)
class ReserveResult:
    accepted: bool
    payout_id: str
    status: PayoutStatus
    reason: str | None
    replay: bool  # True: the same owner asked before; this is the stored answer


@dataclass(frozen=True)
class PayoutFacts:
    """A payout as the ledger holds it, with its evidence, read in one transaction: what a workflow run
    follows after a Reset, or when the ledger refused its next step."""

    payout: PayoutRecord
    since: datetime  # when the payout entered its status
    attempts: list[AttemptRecord]
    open_bills: list[OpenBill]
    callbacks: list[CallbackRecord]  # routed to the payout, in the order stored


@dataclass(frozen=True)
class StatusMove:
    """A status change as the ledger made it: the row after it, and whether the status changed (a
    repeated move changes nothing, so an outcome is counted once)."""

    payout: PayoutRecord
    changed: bool


@dataclass(frozen=True)
class Escalation:
    """A payout handed to a person: the reason it waits with, and the bills that may hold money."""

    reason: str
    open_bills: list[OpenBill]
    changed: bool


@dataclass(frozen=True)
class AttemptStart:
    """What a bill round found when it asked to send: a new `prepared` attempt, or (attempt None) the
    round's earlier attempts, one of which may already hold a bill (adopted, or a person decides)."""

    attempt: AttemptRecord | None
    earlier: list[AttemptRecord]


@dataclass(frozen=True)
class AttemptEnding:
    """An attempt's recorded ending, and the bill's callbacks that came before its route (to hand over)."""

    attempt: AttemptRecord
    early_callbacks: list[CallbackRecord]


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
class ExchangeEntry:
    """One Portmone exchange to archive, redacted."""

    method: str
    request_redacted: dict[str, str]
    response_body: str | None
    http_status: int | None
    outcome: str
    elapsed_ms: int
    receipt_id: str | None = None
    payout_id: str | None = None
    bill_id: str | None = None
    telegram_id: int | None = None


@dataclass(frozen=True, kw_only=True)
class ExchangeRecord(ExchangeEntry):
    """An archived exchange."""

    id: int
    created_at: datetime


@dataclass(frozen=True)
class OutboxDelivery:
    """One event claimed for one channel: deliver it, then report how it went (`OutboxReport`)."""

    outbox_id: int
    channel: str
    attempts: int  # failed attempts before this one
    event: PayoutEvent
    # The payout's Telegram message id when claimed (MESSAGE_MAYBE_SENT: one may have been sent; None: none)
    telegram_message_id: int | None = None


@dataclass(frozen=True)
class OutboxFailure:
    """A failed attempt: counted, its error kept, tried again after `retry_in`."""

    delivery: OutboxDelivery
    error: str
    retry_in: timedelta


@dataclass(frozen=True)
class OutboxRelease:
    """A claimed event not tried (the relay stopped, or its channel went down): due again after
    `retry_in`, no attempt counted."""

    delivery: OutboxDelivery
    retry_in: timedelta = timedelta(0)


@dataclass(frozen=True)
class OutboxClaim:
    """What a relay pass claimed in one transaction (`Outbox.claim`): each channel's batch, and the
    payouts noted MESSAGE_MAYBE_SENT for it (only those may send a first message)."""

    batches: Mapping[str, list[OutboxDelivery]]
    noted: frozenset[str] = frozenset()


@dataclass(frozen=True)
class OutboxReport:
    """What a relay made of its claimed batches, recorded in one transaction (`Outbox.settle`)."""

    delivered: Sequence[OutboxDelivery] = ()
    failed: Sequence[OutboxFailure] = ()
    released: Sequence[OutboxRelease] = ()
    # Payout id -> the id of the user's Telegram message to record; None: the first message was not sent
    # after all, so the MESSAGE_MAYBE_SENT note goes (only where it is still the note).
    user_messages: Mapping[str, int | None] = dataclasses.field(default_factory=dict)


@dataclass(frozen=True)
class OutboxBacklog:
    """A channel's undelivered events: how many, and when the oldest happened."""

    channel: str
    pending: int
    oldest_at: datetime | None


def to_record(cls: type[R], row: sa.Row[Any]) -> R:
    """The record `cls` (a dataclass above, or a pydantic model such as `PayoutEvent`) from a row that has
    a column for each of its fields. Statuses become `PayoutStatus`; JSON objects become fresh dicts."""
    m = row._mapping
    if issubclass(cls, BaseModel):
        return cls.model_validate({name: m[name] for name in cls.model_fields})
    convert = _converters(cls)
    return cls(**{name: conv(m[name]) for name, conv in convert.items()})


def _as_is(value: Any) -> Any:
    return value


def _status(value: Any) -> PayoutStatus | None:
    return None if value is None else PayoutStatus(value)


def _dict(value: Any) -> dict[str, Any] | None:
    return None if value is None else dict(value)


_CONVERTERS: dict[type[Any], dict[str, Callable[[Any], Any]]] = {}


def _converters(cls: type[Any]) -> dict[str, Callable[[Any], Any]]:
    """Per field of a record dataclass: how a column value becomes the field's value (worked out once)."""
    if cls in _CONVERTERS:
        return _CONVERTERS[cls]
    hints = typing.get_type_hints(cls)
    found: dict[str, Callable[[Any], Any]] = {}
    for field in dataclasses.fields(cast("type[DataclassInstance]", cls)):
        hint = hints[field.name]
        parts = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
        if PayoutStatus in parts:
            found[field.name] = _status
        elif any(part is dict or typing.get_origin(part) is dict for part in parts):
            found[field.name] = _dict
        else:
            found[field.name] = _as_is
    _CONVERTERS[cls] = found
    return found
