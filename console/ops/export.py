"""`payouts ops export`: the manual queue as CSV (ids, amounts in kopecks, reasons; no phone numbers)."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime

from console.ops.queue import QueueItem

COLUMNS = (
    "payout_id", "receipt_id", "amount_kopecks", "currency", "escalation_reason", "in_review_since",
    "age_seconds", "bill_id", "last_error",
)


def queue_csv(items: Sequence[QueueItem], now: datetime) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for item in items:
        writer.writerow([
            item.payout_id, item.receipt_id, item.amount_kopecks, item.currency, item.reason,
            item.since.isoformat(), int(item.age(now).total_seconds()), item.bill_id, item.last_error,
        ])
    return out.getvalue()
