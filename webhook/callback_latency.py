"""`portmone_callback_latency_seconds`: from the moment the ledger recorded Portmone's bills.create
answer for a bill to the moment that bill's callback was stored.

Observed once per callback (the first time it is stored), from the ledger's own timestamps, both read
in the transaction that stores the callback. A callback that arrives before the bill's answer was
recorded (an early callback) has no latency to observe.
"""

from __future__ import annotations

from ledger import StoreCallbackResult
from runtime import metrics


def observe_callback_latency(stored: StoreCallbackResult) -> None:
    if stored.inserted and stored.bill_answered_at is not None:
        metrics.record_callback_latency((stored.callback.received_at - stored.bill_answered_at).total_seconds())
