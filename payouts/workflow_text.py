"""What the Temporal Web UI shows of a payout: static summary and current details (Markdown).

Pure functions of the payout view, so workflows can call them deterministically. Masked phone only.
"""

from __future__ import annotations

from payouts.models import PayoutView
from payouts.money import format_amount
from payouts.status import PayoutStatus

_NEXT_STEP = {
    PayoutStatus.RECEIVED: "Nothing: the ledger reservation runs next.",
    PayoutStatus.RESERVED: "Nothing: the Portmone bill is requested next.",
    PayoutStatus.BILL_REQUESTED: "Nothing: waiting for Portmone's answer to bills.create.",
    PayoutStatus.AWAITING_CALLBACK: "Nothing yet: waiting for Portmone's callback; it escalates on timeout.",
    PayoutStatus.RETRY_SCHEDULED: "Nothing: a new bill is requested after the back-off.",
    PayoutStatus.MANUAL_REVIEW: (
        "Decide: update `retry` (new bill), `mark_paid` (with an external reference) or `cancel` "
        "(with a reason). See docs/runbook.md for this reason. CLI: `payouts ops show {payout_id}`."
    ),
    PayoutStatus.PAID: "Nothing: paid.",
    PayoutStatus.FAILED: "Nothing: failed for good.",
    PayoutStatus.CANCELLED: "Nothing: cancelled by an operator.",
    PayoutStatus.REJECTED: "Nothing: rejected at the gate; no bill was created.",
}


def static_summary(receipt_id: str, amount_kopecks: int, currency: str, masked_msisdn: str) -> str:
    return f"Receipt {receipt_id}: {format_amount(amount_kopecks)} {currency} to {masked_msisdn}"


def current_details(view: PayoutView, next_deadline: str = "") -> str:
    lines = [
        f"**Status:** {view.status.value}",
        f"**Receipt:** {view.receipt_id} · **Amount:** {format_amount(view.amount_kopecks)} {view.currency}"
        f" · **Phone:** {view.masked_msisdn}",
        f"**Portmone bill:** {view.bill_id or '—'} (round {view.bill_round})",
    ]
    if view.escalation_reason:
        lines.append(f"**Escalation reason:** `{view.escalation_reason}`")
    if view.rejection_reason:
        lines.append(f"**Rejected:** `{view.rejection_reason}`")
    if view.last_error:
        lines.append(f"**Last error:** {view.last_error}")
    if next_deadline:
        lines.append(f"**Next deadline:** callback expected by {next_deadline}")
    lines.append(f"**Operator can do now:** {_NEXT_STEP[view.status].format(payout_id=view.payout_id)}")
    return "\n\n".join(lines)
