"""Payout events: what the service tells the world about a payout, outside Temporal history.

The ledger writes one event in the same transaction as the state change it reports (a transactional
outbox), and a relay in the worker delivers each to the configured channels: the user's Telegram
message, analytics, the bot's `bonus.events` queue. Nothing here holds a phone number.

`event_id` is stable for one occurrence (the same value on every delivery attempt), so a channel or
its consumer can drop a repeat.

Channels never write the ledger: the relay claims a batch, asks the channel to `prepare` it (which
payouts' first user message the batch may send: the relay notes them in the ledger, in the claim's
transaction, before any is sent), delivers each event and records what each delivery hands back
(`UserMessage`) with the batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
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


# The user's Telegram message ids are positive: 0 records "a first message may have been sent, its id is
# unknown" (noted before it is sent, so a relay that stops before recording the id never sends it twice).
MESSAGE_MAYBE_SENT = 0


@dataclass(frozen=True)
class Outgoing:
    """An event on its way to a channel, with what the ledger holds of the user's message about the payout."""

    event: PayoutEvent
    # The message's id; MESSAGE_MAYBE_SENT: one may have been sent (its id unknown); None: none was sent.
    user_message: int | None = None
    # The ledger noted, before this delivery, that it may send the payout's first message (`prepare`).
    first_message: bool = False


@dataclass(frozen=True)
class UserMessage:
    """What a delivery leaves for the ledger to record as the user's message: the id of the message it
    sent, or None when the first message was not sent after all (the MESSAGE_MAYBE_SENT note goes)."""

    id: int | None


class ChannelUnavailable(Exception):
    """A channel could not deliver now; the relay tries the event again later. `user_message`: what to
    record all the same (a first message that Telegram says it did not send)."""

    def __init__(self, message: str = "", *, user_message: UserMessage | None = None) -> None:
        super().__init__(message)
        self.user_message = user_message


class EventChannel(Protocol):
    """One place events go. `deliver` is idempotent by `event.event_id`."""

    name: str

    def prepare(self, batch: Sequence[Outgoing]) -> set[str]:
        """The payouts whose first user message delivering `batch` may send (a channel that sends none:
        the empty set). The relay notes them in the ledger as MESSAGE_MAYBE_SENT in the transaction that
        claims the batch, before any delivery, and hands `deliver` those events with `first_message`.
        Pure (no I/O, no waiting): it runs while that transaction holds the claimed rows."""
        ...

    async def deliver(self, outgoing: Outgoing) -> UserMessage | None:
        """Deliver one event; returns the user's message to record, if any."""
        ...
