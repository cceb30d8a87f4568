"""`payouts consumer`: receipts from the bot's `receipt.accepted` queue into payouts.

Guarantees (docs/queue.md): a message is acknowledged only after its payout's start is confirmed by
Temporal (new or existing), or after its copy is confirmed on the dead-letter or the delay queue; a
crash before that makes the broker deliver it again, and the workflow-id policy makes the second
delivery harmless. The consumer reconnects with back-off whenever the broker goes away, and on stop
(SIGTERM) it stops taking messages, finishes those in hand, then closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage

from rabbit.broker import BROKER_ERRORS, Backoff, connect, connection_name, display_url
from rabbit.handler import Action, Handling, ReceiptHandler
from rabbit.topology import declare_topology
from runtime import metrics
from runtime.settings import RabbitSettings

_log = logging.getLogger("payouts.rabbit.consumer")

REASON_HEADER = "x-payouts-reason"
DETAIL_HEADER = "x-payouts-detail"
RETRIES_HEADER = "x-payouts-retries"
SOURCE_HEADER = "x-payouts-source-queue"
# A publish the broker refused is not retried on the spot: the message goes back after this pause.
_REQUEUE_PAUSE_SECONDS = 1.0
_DRAIN_SECONDS = 30.0


class ReceiptConsumer:
    def __init__(self, settings: RabbitSettings, handler: ReceiptHandler, *, name: str | None = None) -> None:
        self._settings = settings
        self._handler = handler
        self.name = name or connection_name("consumer")  # what the broker lists for the connection
        self._stop = asyncio.Event()
        self._in_flight: set[asyncio.Task[Any]] = set()
        self.consuming = asyncio.Event()  # set while a channel is consuming
        self.reconnects = 0

    def stop(self) -> None:
        """Stop taking messages, finish the ones in hand, close (`run` then returns)."""
        self._stop.set()

    async def run(self) -> None:
        """Consume until `stop`; a lost broker is reconnected with back-off. TopologyMismatch ends it."""
        backoff = Backoff(self._settings.reconnect_min_seconds, self._settings.reconnect_max_seconds)
        while not self._stop.is_set():
            try:
                connection = await connect(self._settings, self.name)
            except BROKER_ERRORS as exc:
                delay = backoff.next_delay()
                _log.warning("RabbitMQ at %s does not answer (%s); next try in %.1f s",
                             display_url(self._settings), type(exc).__name__, delay)
                await self._pause(delay)
                continue
            try:
                await self._consume(connection, backoff)
            except BROKER_ERRORS as exc:
                _log.warning("lost the RabbitMQ channel (%s)", type(exc).__name__)
            finally:
                self.consuming.clear()
                with contextlib.suppress(*BROKER_ERRORS):
                    await connection.close()
            if not self._stop.is_set():
                self.reconnects += 1
                metrics.record_queue_reconnect()
                delay = backoff.next_delay()
                _log.warning("RabbitMQ connection lost; reconnecting in %.1f s", delay)
                await self._pause(delay)
        _log.info("consumer stopped")

    async def _consume(self, connection: AbstractConnection, backoff: Backoff) -> None:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        await channel.set_qos(prefetch_count=self._settings.prefetch)
        queue = await declare_topology(channel, self._settings)
        tag = await queue.consume(functools.partial(self._on_message, channel))
        backoff.reset()
        self.consuming.set()
        _log.info("consuming %s at %s (prefetch %d)", queue.name, display_url(self._settings),
                  self._settings.prefetch)
        stop = asyncio.ensure_future(self._stop.wait())
        lost = asyncio.ensure_future(channel.closed())
        try:
            await asyncio.wait({stop, lost}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if lost.done():
            return  # the broker closed the channel or the connection: `run` reconnects
        lost.cancel()
        _log.info("stopping: no new messages; finishing %d in hand", len(self._in_flight))
        with contextlib.suppress(*BROKER_ERRORS):
            await queue.cancel(tag)
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=_DRAIN_SECONDS)
        await channel.close()

    async def _on_message(self, channel: AbstractChannel, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        try:
            await self._process(channel, message)
        finally:
            self._in_flight.discard(task)

    async def _process(self, channel: AbstractChannel, message: AbstractIncomingMessage) -> None:
        try:
            handling = await self._handler.handle(message.body)
        except Exception:  # a bug must not hold the message (and a prefetch slot) for ever
            _log.exception("message handling failed; trying it again after the delay")
            handling = Handling(Action.RETRY, "retried", detail="internal error")
        try:
            if handling.action is Action.DEAD_LETTER:
                await self._publish_copy(channel, message, self._settings.dead_letter_queue, {
                    REASON_HEADER: handling.reason.value if handling.reason else "unknown",
                    DETAIL_HEADER: handling.detail,
                    SOURCE_HEADER: self._settings.intake_queue,
                })
            elif handling.action is Action.RETRY:
                await self._publish_copy(channel, message, self._settings.retry_queue, {
                    RETRIES_HEADER: _retries(message) + 1,
                })
            await message.ack()
        except BROKER_ERRORS as exc:
            # Unacknowledged: the broker delivers it again (now, or when the channel is gone).
            _log.warning("message left unacknowledged (%s); the broker delivers it again", type(exc).__name__)
            await asyncio.sleep(_REQUEUE_PAUSE_SECONDS)
            with contextlib.suppress(*BROKER_ERRORS):
                await message.nack(requeue=True)
            return
        _count(handling)

    async def _publish_copy(
        self, channel: AbstractChannel, message: AbstractIncomingMessage, queue: str, headers: dict[str, Any]
    ) -> None:
        """The message as it came, plus `headers`, persistent, on `queue`; returns once the broker confirms."""
        copy = aio_pika.Message(
            message.body,
            headers={**(message.headers or {}), **headers},
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            timestamp=message.timestamp,
            type=message.type,
            app_id=message.app_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )
        await channel.default_exchange.publish(
            copy, routing_key=queue, mandatory=True, timeout=self._settings.publish_timeout_seconds
        )

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)


def _retries(message: AbstractIncomingMessage) -> int:
    value = (message.headers or {}).get(RETRIES_HEADER, 0)
    return value if isinstance(value, int) else 0


def _count(handling: Handling) -> None:
    metrics.record_queue_message(handling.outcome, handling.reason.value if handling.reason is not None else None)
