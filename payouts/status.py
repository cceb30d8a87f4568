"""Payout statuses and the one table of legal transitions (the ledger enforces it, the workflow follows it)."""

from __future__ import annotations

from enum import StrEnum


class PayoutStatus(StrEnum):
    RECEIVED = "RECEIVED"
    RESERVED = "RESERVED"
    BILL_REQUESTED = "BILL_REQUESTED"
    AWAITING_CALLBACK = "AWAITING_CALLBACK"
    RETRY_SCHEDULED = "RETRY_SCHEDULED"
    MANUAL_REVIEW = "MANUAL_REVIEW"
    PAID = "PAID"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"
    REJECTED = "REJECTED"


TERMINAL: frozenset[PayoutStatus] = frozenset(
    {PayoutStatus.PAID, PayoutStatus.FAILED, PayoutStatus.CANCELLED, PayoutStatus.REJECTED}
)

_S = PayoutStatus
LEGAL_TRANSITIONS: dict[PayoutStatus, frozenset[PayoutStatus]] = {
    _S.RECEIVED: frozenset({_S.RESERVED, _S.REJECTED}),
    _S.RESERVED: frozenset({_S.BILL_REQUESTED, _S.MANUAL_REVIEW, _S.FAILED, _S.CANCELLED}),
    # PAID straight from BILL_REQUESTED: the callback can beat the create answer.
    _S.BILL_REQUESTED: frozenset(
        {_S.AWAITING_CALLBACK, _S.RETRY_SCHEDULED, _S.MANUAL_REVIEW, _S.PAID, _S.FAILED}
    ),
    _S.AWAITING_CALLBACK: frozenset({_S.PAID, _S.RETRY_SCHEDULED, _S.MANUAL_REVIEW, _S.FAILED}),
    # PAID from RETRY_SCHEDULED: a late paid callback for the earlier bill ends the back-off.
    _S.RETRY_SCHEDULED: frozenset({_S.BILL_REQUESTED, _S.MANUAL_REVIEW, _S.PAID, _S.FAILED, _S.CANCELLED}),
    # Only an operator (or a late `ok` callback) moves a payout out of manual review.
    _S.MANUAL_REVIEW: frozenset({_S.BILL_REQUESTED, _S.PAID, _S.CANCELLED, _S.FAILED}),
    _S.PAID: frozenset(),
    _S.FAILED: frozenset(),
    _S.CANCELLED: frozenset(),
    _S.REJECTED: frozenset(),
}

# Statuses whose amount counts against the per-user and daily-budget limits.
COUNTS_AGAINST_LIMITS: frozenset[PayoutStatus] = frozenset(set(PayoutStatus) - {_S.REJECTED, _S.CANCELLED, _S.FAILED})


def is_legal(current: PayoutStatus, new: PayoutStatus) -> bool:
    """A transition is legal when the table allows it; staying put is always allowed (idempotent replays)."""
    return current == new or new in LEGAL_TRANSITIONS[current]
