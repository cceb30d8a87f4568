"""The queue consumer's series that the queue alerts read, at 0 from its start
(runtime.metrics.start_at_zero): every dead-letter reason, and the `retried` outcome.

Declared here, where `payouts consumer` and `payouts dev` start the consumer, until rabbit/ declares
them beside its own vocabulary (rabbit/contract.py, rabbit/handler.py); then this module goes.
"""

from __future__ import annotations

from rabbit.contract import DeadLetterReason
from runtime import metrics

RETRIED = "retried"  # rabbit/handler.py: a start Temporal refused, delayed and tried again


def start_queue_series_at_zero() -> None:
    metrics.start_at_zero(metrics.QUEUE_DEAD_LETTERS, metrics.every(reason=DeadLetterReason))
    metrics.start_at_zero(metrics.QUEUE_MESSAGES, metrics.every(outcome=[RETRIED]))
    metrics.start_at_zero(metrics.QUEUE_RECONNECTS)
