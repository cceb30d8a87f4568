"""`portmone_callback_latency_seconds`: from the moment the ledger recorded Portmone's bills.create
answer for a bill to the moment that bill's callback was stored.

Observed once per callback (the first time it is stored), from the ledger's own timestamps. A
callback that arrives before the bill's answer was recorded (an early callback) has no latency to
observe. Measuring never fails or delays the callback's answer beyond one read.
"""

from __future__ import annotations

import logging

from ledger import CallbackRecord, Ledger, LedgerUnavailable
from payouts import metrics

_log = logging.getLogger("payouts.webhook.callback")


async def observe_callback_latency(ledger: Ledger, payout_id: str, stored: CallbackRecord) -> None:
    try:
        attempts = await ledger.attempts.for_payout(payout_id)
    except LedgerUnavailable as exc:
        _log.debug("callback latency not observed: %s", exc)
        return
    for attempt in attempts:
        if attempt.bill_id == stored.bill_id and attempt.state == "answered" and attempt.finished_at is not None:
            metrics.record_callback_latency((stored.received_at - attempt.finished_at).total_seconds())
            return
