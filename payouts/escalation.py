"""The fixed set of reasons a payout goes to MANUAL_REVIEW, and what an operator can do about each.

A reason is one of `callback_timeout`, `outcome_unknown`, `permanent_error:<code>`,
`retries_exhausted`, `telecom_failed`, `reversed`, `cancellation_requested`,
`state_conflict`. The workflow builds reasons only through
`reason_text`, so nothing outside this set reaches the ledger or the `EscalationReason` search
attribute. docs/runbook.md explains each one for operators.
"""

from __future__ import annotations

import re

from payouts.models import EscalationReason

_CODE = re.compile(r"^[A-Za-z0-9_.-]{1,32}$")

_CONFIRM = (
    "While the payout lists open bills, `retry` and `cancel` need `confirmed_no_bill_at_portmone` "
    "(CLI `--confirm-no-bill-at-portmone`): Portmone holds no such bill, or it is unpaid and you cancelled it there."
)

_HINTS: dict[EscalationReason, str] = {
    EscalationReason.CALLBACK_TIMEOUT: (
        "Portmone never said how the bill ended; the bill is live until Portmone says otherwise. Check it in "
        "Portmone's cabinet: paid → `mark_paid` with Portmone's payment id; unpaid → cancel it there, then "
        "`retry` (or `cancel`) with the confirmation; unsure → wait (a late `ok` callback still completes "
        "the payout). " + _CONFIRM
    ),
    EscalationReason.OUTCOME_UNKNOWN: (
        "A bill request may have reached Portmone unanswered, so a bill may exist. Find the receipt's bills "
        "in Portmone's cabinet: paid → `mark_paid`; unpaid → cancel it there; none → nothing to cancel. "
        "Then `retry` or `cancel` with the confirmation. " + _CONFIRM
    ),
    EscalationReason.PERMANENT_ERROR: (
        "Portmone refused the bill for good (code in the reason). Fix the cause (payee, phone, amount) and "
        "`retry`, or `cancel` with a reason the user can be told."
    ),
    EscalationReason.RETRIES_EXHAUSTED: (
        "Every automatic attempt was refused by Portmone with a transient error or never sent; no bill "
        "holds money. When Portmone works again → `retry`; otherwise `cancel`."
    ),
    EscalationReason.TELECOM_FAILED: (
        "Portmone paid the bill but the telecom top-up failed. `retry` repeats only the top-up (same "
        "idempotency key, no new bill); topped up by hand → `mark_paid` with the reference."
    ),
    EscalationReason.REVERSED: (
        "Portmone returned the payment. `retry` to pay again with a new bill, or `cancel` with a reason."
    ),
    EscalationReason.CANCELLATION_REQUESTED: (
        "Someone asked Temporal to cancel this payout (the Web UI's Request Cancellation, or the API). "
        "Nothing was abandoned: decide with `cancel` (the user is told), `retry` or `mark_paid`. " + _CONFIRM
    ),
    EscalationReason.STATE_CONFLICT: (
        "The ledger refused the workflow's next status (after a workflow reset, or a bug). Compare "
        "`payouts ops show` (ledger timeline) with the workflow history before deciding. " + _CONFIRM
    ),
}


def reason_text(kind: EscalationReason, code: str | None = None) -> str:
    """The reason as stored and shown: `permanent_error:<code>` for permanent errors, the bare name otherwise."""
    if kind is EscalationReason.PERMANENT_ERROR:
        safe = code if code and _CODE.match(code) else "unknown"
        return f"{kind.value}:{safe}"
    if code is not None:
        raise ValueError(f"{kind.value} takes no code")
    return kind.value


def reason_kind(reason: str | None) -> EscalationReason | None:
    """The family of a stored reason (`permanent_error:30` → PERMANENT_ERROR); None when not one of ours."""
    if not reason:
        return None
    name, _, code = reason.partition(":")
    try:
        kind = EscalationReason(name)
    except ValueError:
        return None
    if kind is EscalationReason.PERMANENT_ERROR:
        return kind if _CODE.match(code) else None
    return kind if not code else None


def is_known(reason: str | None) -> bool:
    return reason_kind(reason) is not None


def operator_hint(reason: str | None) -> str:
    kind = reason_kind(reason)
    return _HINTS[kind] if kind is not None else "Read the last error and the timeline (`payouts ops show`)."


def matches(reason: str | None, wanted: str) -> bool:
    """CLI filter: `permanent_error` matches every `permanent_error:<code>`; anything else matches exactly."""
    if not reason:
        return False
    return reason == wanted or (":" not in wanted and reason.partition(":")[0] == wanted)
