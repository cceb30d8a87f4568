"""Prometheus metrics of the queue path (served by `payouts consumer`, or by the webhook in `payouts dev`)."""

from __future__ import annotations

from prometheus_client import Counter

MESSAGES = Counter(
    "payout_queue_messages_total",
    "receipt.accepted messages handled, by outcome (started, existing, ignored, dead_lettered, retried)",
    ["outcome"],
)
DEAD_LETTERS = Counter(
    "payout_queue_dead_letters_total", "Messages put on the dead-letter queue, by reason", ["reason"]
)
RECONNECTS = Counter("payout_queue_reconnects_total", "Times the consumer lost the broker and connected again")
EVENTS_PUBLISHED = Counter("payout_bonus_events_published_total", "Payout events confirmed by the broker", ["kind"])
