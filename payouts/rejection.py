"""Why a receipt is rejected at the gate, before any bill: one vocabulary for the ledger (which refuses
reservations), the gate activity, the workflow and the user's message."""

from __future__ import annotations

from enum import StrEnum


class RejectionReason(StrEnum):
    DUPLICATE_RECEIPT = "duplicate_receipt"
    DUPLICATE_FISCAL_KEY = "duplicate_fiscal_key"
    AMOUNT_OVER_MAX = "amount_over_max"
    USER_DAILY_LIMIT = "user_daily_limit"
    DAILY_BUDGET = "daily_budget"
    ACCEPTED_IN_FUTURE = "not_eligible:accepted_in_future"
    RECEIPT_TOO_OLD = "not_eligible:receipt_too_old"
    INVALID_DATA = "invalid_data"  # stored as invalid_data:<failure type>


# Rejections the shopper is told about (a limit they can understand); duplicates and bad data are not.
TOLD_TO_USER: frozenset[str] = frozenset(
    {
        RejectionReason.USER_DAILY_LIMIT,
        RejectionReason.DAILY_BUDGET,
        RejectionReason.AMOUNT_OVER_MAX,
        RejectionReason.RECEIPT_TOO_OLD,
    }
)


def invalid_data(failure_type: str) -> str:
    return f"{RejectionReason.INVALID_DATA.value}:{failure_type}"
