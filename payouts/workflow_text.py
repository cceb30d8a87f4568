"""What the Temporal Web UI shows of a payout: static summary and current details (Markdown).

Pure functions of the payout view, so workflows can call them deterministically. Masked phone only.
"""

from __future__ import annotations

from payouts.escalation import operator_hint
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
        "Decide with an update — `retry`, `mark_paid` (external reference) or `cancel` (reason; the user "
        "is told) — each naming the operator. {hint} Runbook: docs/runbook.md, section `{family}`. "
        "CLI: `payouts ops show {payout_id}`."
    ),
    PayoutStatus.PAID: "Nothing: paid.",
    PayoutStatus.FAILED: "Nothing: failed for good.",
    PayoutStatus.CANCELLED: "Nothing: cancelled by an operator.",
    PayoutStatus.REJECTED: "Nothing: rejected at the gate; no bill was created.",
}


def static_summary(receipt_id: str, amount_kopecks: int, currency: str, masked_msisdn: str) -> str:
    return f"Receipt {receipt_id}: {format_amount(amount_kopecks)} {currency} to {masked_msisdn}"


def current_details(view: PayoutView, next_deadline: str = "") -> str:
    """Markdown for the Web UI. `next_deadline` is a phrase such as "callback expected by 2025-01-01 10:00 UTC"."""
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
    if view.status == PayoutStatus.MANUAL_REVIEW and view.escalated_at is not None:
        since = view.escalated_at.strftime("%Y-%m-%d %H:%M UTC")
        lines.append(f"**In manual review since:** {since} · **reminders sent:** {view.reminders_sent}")
    if next_deadline:
        lines.append(f"**Next deadline:** {next_deadline}")
    step = _NEXT_STEP[view.status].format(
        payout_id=view.payout_id,
        hint=operator_hint(view.escalation_reason),
        family=(view.escalation_reason or "unknown").partition(":")[0],
    )
    lines.append(f"**Operator can do now:** {step}")
    return "\n\n".join(lines)
