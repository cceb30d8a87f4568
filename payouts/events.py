"""Payout events: what the service tells the world about a payout, outside Temporal history.

The ledger writes one event in the same transaction as the state change it reports (a transactional
outbox), and a relay in the worker delivers each to the configured channels: the user's Telegram
message, analytics, the bot's `bonus.events` queue. Nothing here holds a phone number.

`event_id` is stable for one occurrence (the same value on every delivery attempt), so a channel or
its consumer can drop a repeat.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal, Protocol

from pydantic import BaseModel, ConfigDict

from payouts.status import PayoutStatus


class PayoutEventKind(StrEnum):
    PENDING = "payout_pending"  # reserved: the user hears "processing"
    SUCCESS = "payout_success"  # PAID
    FAILED = "payout_failed"  # FAILED, CANCELLED or REJECTED (the status says which)
    MANUAL_REVIEW = "manual_review"  # a person will look


class PayoutEvent(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: str
    kind: PayoutEventKind
    payout_id: str
    receipt_id: str
    telegram_id: int
    status: PayoutStatus
    amount_kopecks: int
    language: Literal["uk", "en"] = "uk"
    bill_id: str | None = None
    reason: str | None = None  # an escalation or rejection reason (our words)
    error_code: str | None = None  # Portmone's error code, when one is known
    error_description: str | None = None
    occurred_at: datetime


class ChannelUnavailable(Exception):
    """A channel could not deliver now; the relay tries the event again later."""


class EventChannel(Protocol):
    """One place events go. `deliver` is idempotent by `event.event_id`."""

    name: str

    async def deliver(self, event: PayoutEvent) -> None: ...
