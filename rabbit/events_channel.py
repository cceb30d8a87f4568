"""Payout events to the bot's `bonus.events` queue: an `EventChannel` (payouts.events).

Each event is one persistent JSON message (docs/queue.md, "bonus.events"): the event's fields plus
`version`, with `message_id` = the event's `event_id`, so a second delivery of the same event (the
relay trying again after a lost confirm) carries the same id and the bot's gateway drops it.
`deliver` returns only once the broker has confirmed the message; any broker trouble, including no
confirm within `RABBIT_PUBLISH_TIMEOUT_SECONDS`, is `ChannelUnavailable` and the relay tries later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection

from payouts.events import ChannelUnavailable, Outgoing, PayoutEvent, UserMessage
from rabbit.broker import BROKER_ERRORS, broker_url, connect, connection_name
from runtime import metrics
from runtime.settings import RabbitSettings, Settings

EVENT_VERSION = 1
_log = logging.getLogger("payouts.rabbit.events")


def event_message(event: PayoutEvent) -> aio_pika.Message:
    body = {"version": EVENT_VERSION, **event.model_dump(mode="json")}
    return aio_pika.Message(
        json.dumps(body, separators=(",", ":")).encode(),
        message_id=event.event_id,
        type=event.kind.value,
        content_type="application/json",
        timestamp=event.occurred_at,
        app_id="receipt-payouts",
        delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
    )


class BonusEventsChannel:
    """Publishes to one durable queue through the default exchange; connects on first use and again
    after any failure."""

    name = "bonus_events"

    def __init__(self, settings: RabbitSettings, queue: str) -> None:
        self._settings = settings
        self.queue = queue
        self._lock = asyncio.Lock()
        self._connection: AbstractConnection | None = None
        self._channel: AbstractChannel | None = None

    def prepare(self, batch: Sequence[Outgoing]) -> set[str]:
        return set()  # the bot's gateway keeps the user's messages

    async def deliver(self, outgoing: Outgoing) -> UserMessage | None:
        event = outgoing.event
        try:
            async with asyncio.timeout(self._settings.publish_timeout_seconds):
                channel = await self._open()
                await channel.default_exchange.publish(event_message(event), routing_key=self.queue, mandatory=True)
        except BROKER_ERRORS as exc:
            await self.aclose()
            problem = type(exc).__name__
            raise ChannelUnavailable(f"{self.queue}: RabbitMQ did not confirm the event ({problem})") from None
        metrics.record_bonus_event_published(event.kind.value)
        return None

    async def aclose(self) -> None:
        async with self._lock:
            connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            with contextlib.suppress(*BROKER_ERRORS):
                await connection.close()

    async def _open(self) -> AbstractChannel:
        async with self._lock:
            if self._channel is not None and not self._channel.is_closed:
                return self._channel
            if self._connection is not None:
                with contextlib.suppress(*BROKER_ERRORS):
                    await self._connection.close()
            self._connection = await connect(self._settings, connection_name("events"))
            channel = await self._connection.channel(publisher_confirms=True, on_return_raises=True)
            await channel.declare_queue(self.queue, durable=True)
            self._channel = channel
            _log.info("publishing payout events to %s", self.queue)
            return channel


def bonus_events_channel(settings: Settings) -> BonusEventsChannel | None:
    """The channel when `EVENTS_BONUS_QUEUE_ENABLED` is on, else None (for the relay's channel list)."""
    if not settings.events.bonus_queue_enabled:
        return None
    broker_url(settings.rabbit)  # a ConfigError now, not at the first event
    return BonusEventsChannel(settings.rabbit, settings.events.bonus_queue)
