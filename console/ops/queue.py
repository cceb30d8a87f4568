"""The manual queue: payouts waiting in MANUAL_REVIEW, as the Web UI lists them, with their age.

Workflows come from Temporal visibility (`PayoutStatus="MANUAL_REVIEW"`, running); the time each
entered manual review and its last error come from the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from console.ops.context import Ops
from payouts import escalation
from payouts import search_attributes as sa
from payouts.names import WorkflowName
from payouts.status import PayoutStatus

QUEUE_QUERY = f'WorkflowType="{WorkflowName.PAYOUT}" AND PayoutStatus="MANUAL_REVIEW" AND ExecutionStatus="Running"'


@dataclass(frozen=True)
class QueueItem:
    payout_id: str
    receipt_id: str
    amount_kopecks: int
    currency: str
    reason: str
    bill_id: str
    since: datetime
    last_error: str

    def age(self, now: datetime) -> timedelta:
        return now - self.since


@dataclass(frozen=True)
class QueueFilter:
    reason: str | None = None
    min_age: timedelta | None = None
    max_age: timedelta | None = None

    def keeps(self, item: QueueItem, now: datetime) -> bool:
        if self.reason is not None and not escalation.matches(item.reason, self.reason):
            return False
        age = item.age(now)
        if self.min_age is not None and age < self.min_age:
            return False
        return not (self.max_age is not None and age > self.max_age)


async def manual_queue(ops: Ops, keep: QueueFilter, now: datetime | None = None) -> list[QueueItem]:
    """The queue, oldest first."""
    now = now or datetime.now(UTC)
    found = [wf async for wf in ops.client.list_workflows(QUEUE_QUERY)]
    entered = await ops.ledger.reports.entered_status_at([wf.id for wf in found])
    items: list[QueueItem] = []
    for wf in found:
        attrs = wf.typed_search_attributes
        record = await ops.ledger.payouts.get(wf.id)
        error = ""
        if record is not None and (record.error_code or record.error_description):
            error = " ".join(part for part in (record.error_code, record.error_description) if part)
        item = QueueItem(
            payout_id=wf.id,
            receipt_id=attrs.get(sa.RECEIPT_ID) or (record.receipt_id if record else ""),
            amount_kopecks=attrs.get(sa.PAYOUT_AMOUNT_KOPECKS) or (record.amount_kopecks if record else 0),
            currency=record.currency if record else "UAH",
            reason=attrs.get(sa.ESCALATION_REASON) or (record.reason or "" if record else ""),
            bill_id=attrs.get(sa.PORTMONE_BILL_ID) or (record.bill_id or "" if record else ""),
            since=entered.get(wf.id) or wf.start_time,
            last_error=error,
        )
        if keep.keeps(item, now):
            items.append(item)
    return sorted(items, key=lambda i: (i.since, i.payout_id))


@dataclass(frozen=True)
class AwaitingCallback:
    """Payouts the ledger holds as waiting for Portmone's callback: the manual queue's next arrivals."""

    count: int
    oldest_since: datetime | None

    def escalates_at(self, callback_timeout: timedelta) -> datetime | None:
        """When the oldest comes to the manual queue if no callback arrives."""
        return None if self.oldest_since is None else self.oldest_since + callback_timeout


async def awaiting_callback(ops: Ops) -> AwaitingCallback:
    waiting = await ops.ledger.reports.payouts_in_status(PayoutStatus.AWAITING_CALLBACK)
    entered = await ops.ledger.reports.entered_status_at([p.id for p in waiting])
    since = [entered.get(p.id) or p.updated_at for p in waiting]
    return AwaitingCallback(count=len(waiting), oldest_since=min(since, default=None))
