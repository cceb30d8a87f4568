"""The manual-review queue's size and oldest age, read from the ledger every
`WORKER_LEDGER_GAUGES_INTERVAL_SECONDS` and exported as gauges (runtime.metrics).

One cheap query per interval, not one per scrape. Every worker replica reads the same ledger, so
alerts take the `max` across replicas.
"""

from __future__ import annotations

import asyncio
import logging

from ledger import Ledger, LedgerUnavailable
from payouts.status import PayoutStatus
from runtime import metrics

_log = logging.getLogger("payouts.worker.gauges")


async def refresh_once(ledger: Ledger) -> None:
    size, oldest = await ledger.reports.queue_summary(PayoutStatus.MANUAL_REVIEW)
    metrics.set_manual_review_queue(size, oldest)


async def refresh_forever(ledger: Ledger, interval: float) -> None:
    while True:
        try:
            await refresh_once(ledger)
        except LedgerUnavailable as exc:
            _log.warning("manual-review gauges not refreshed: %s", exc)
        except Exception:  # the gauges must outlive any one bad read
            _log.exception("manual-review gauges not refreshed")
        await asyncio.sleep(interval)
