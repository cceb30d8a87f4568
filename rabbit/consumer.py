"""`payouts consumer`: receipts from the bot's `receipt.accepted` queue into payouts.

Guarantees (docs/queue.md): a message is acknowledged only after its payout's start is confirmed by
Temporal (new or existing), or after its copy is confirmed on the dead-letter or the delay queue; a
crash before that makes the broker deliver it again, and the workflow-id policy makes the second
delivery harmless. The consumer reconnects with back-off whenever the broker goes away, and on stop
(SIGTERM) it stops taking messages, finishes those in hand, then closes.

No message stalls intake: one the client cannot decode arrives marked (rabbit/frames.py) and is
dead-lettered; a copy never outgrows the broker's frame limit (the bot's largest headers are left
out, and the reason says so); handling that keeps raising is dead-lettered after
`RABBIT_MAX_HANDLING_FAILURES` tries; and whatever still kills the connection is dead-lettered by the
broker after `RABBIT_DELIVERY_LIMIT` deliveries (rabbit/topology.py). After a lost connection the
consumer takes one message at a time until it has settled a prefetch's worth, so the messages that
were in hand with a poison one come back one by one, and only the poison one is counted towards
that limit again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import traceback
from typing import Any

import aio_pika
from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractIncomingMessage, AbstractQueue, ConsumerTag
from pamqp import encode
from pamqp.header import ContentHeader

from payouts.msisdn import mask_phones
from rabbit import frames
from rabbit.broker import BROKER_ERRORS, Backoff, connect, connection_name, display_url
from rabbit.contract import DeadLetterReason
from rabbit.handler import Action, Handling, ReceiptHandler
from rabbit.topology import declare_topology
from runtime import metrics
from runtime.settings import RabbitSettings

_log = logging.getLogger("payouts.rabbit.consumer")

REASON_HEADER = "x-payouts-reason"
DETAIL_HEADER = "x-payouts-detail"
RETRIES_HEADER = "x-payouts-retries"
FAILURES_HEADER = "x-payouts-failures"
SOURCE_HEADER = "x-payouts-source-queue"
# Not carried onto a copy: the broker's delivery count (the copy is a new message) and our marker.
_NOT_COPIED = frozenset({"x-delivery-count", frames.UNDECODABLE_HEADER})
# A publish the broker refused is not retried on the spot: the message goes back after this pause.
_REQUEUE_PAUSE_SECONDS = 1.0
_DRAIN_SECONDS = 30.0
# What the broker allows unless told otherwise; used when the connection does not say.
_DEFAULT_FRAME_MAX = 131072
_FRAME_OVERHEAD = 8  # type, channel, size (7 bytes) and the frame-end octet


class ReceiptConsumer:
    def __init__(self, settings: RabbitSettings, handler: ReceiptHandler, *, name: str | None = None) -> None:
        frames.install()  # a message the client cannot decode must not close the connection
        self._settings = settings
        self._handler = handler
        self.name = name or connection_name("consumer")  # what the broker lists for the connection
        self._stop = asyncio.Event()
        self._in_flight: set[asyncio.Task[Any]] = set()
        self.consuming = asyncio.Event()  # set while a channel is consuming
        self.connection: AbstractConnection | None = None  # the open connection, if any
        self.reconnects = 0
        self._careful = False  # the last connection was lost: its messages in hand are back at the head
        self._settled = 0  # messages settled on the current channel
        self._widen = asyncio.Event()
        self._frame_max = _DEFAULT_FRAME_MAX

    def stop(self) -> None:
        """Stop taking messages, finish the ones in hand, close (`run` then returns)."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

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
            self.connection = connection
            try:
                await self._consume(connection, backoff)
            except BROKER_ERRORS as exc:
                _log.warning("lost the RabbitMQ channel (%s)", type(exc).__name__)
            finally:
                self.consuming.clear()
                self.connection = None
                with contextlib.suppress(*BROKER_ERRORS):
                    await connection.close()
            if not self._stop.is_set():
                self._careful = True
                self.reconnects += 1
                metrics.record_queue_reconnect()
                delay = backoff.next_delay()
                _log.warning("RabbitMQ connection lost; reconnecting in %.1f s", delay)
                await self._pause(delay)
        _log.info("consumer stopped")

    async def _consume(self, connection: AbstractConnection, backoff: Backoff) -> None:
        channel = await connection.channel(publisher_confirms=True, on_return_raises=True)
        self._frame_max = await _frame_max(channel)
        queue = await declare_topology(channel, self._settings)
        careful = self._careful
        self._settled = 0
        self._widen.clear()
        tag = await self._start_consuming(channel, queue, 1 if careful else self._settings.prefetch)
        backoff.reset()
        self.consuming.set()
        _log.info("consuming %s at %s (prefetch %d%s)", queue.name, display_url(self._settings),
                  self._settings.prefetch, ", one at a time until the messages in hand before are settled"
                  if careful else "")
        stop = asyncio.ensure_future(self._stop.wait())
        lost = asyncio.ensure_future(channel.closed())
        widen = asyncio.ensure_future(self._widen.wait())
        waiting = {stop, lost, widen} if careful else {stop, lost}
        try:
            while not (stop.done() or lost.done()):
                await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                if widen.done() and widen in waiting and not (stop.done() or lost.done()):
                    waiting.discard(widen)
                    tag = await self._widened(channel, queue, tag)
        finally:
            stop.cancel()
            widen.cancel()
        if lost.done():
            return  # the broker closed the channel or the connection: `run` reconnects
        lost.cancel()
        _log.info("stopping: no new messages; finishing %d in hand", len(self._in_flight))
        with contextlib.suppress(*BROKER_ERRORS):
            await queue.cancel(tag)
        if self._in_flight:
            await asyncio.wait(set(self._in_flight), timeout=_DRAIN_SECONDS)
        await channel.close()

    async def _start_consuming(self, channel: AbstractChannel, queue: AbstractQueue, prefetch: int) -> ConsumerTag:
        # The broker applies a consumer's prefetch when it starts consuming, not later.
        await channel.set_qos(prefetch_count=prefetch)
        return await queue.consume(functools.partial(self._on_message, channel))

    async def _widened(self, channel: AbstractChannel, queue: AbstractQueue, tag: ConsumerTag) -> ConsumerTag:
        """The messages in hand when the last connection was lost are settled: take a prefetch again."""
        await queue.cancel(tag)  # what is in hand stays ours to settle
        self._careful = False
        _log.info("back to prefetch %d", self._settings.prefetch)
        return await self._start_consuming(channel, queue, self._settings.prefetch)

    async def _on_message(self, channel: AbstractChannel, message: AbstractIncomingMessage) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._in_flight.add(task)
        try:
            await self._process(channel, message)
        finally:
            self._in_flight.discard(task)

    async def _process(self, channel: AbstractChannel, message: AbstractIncomingMessage) -> None:
        handling, failures = await self._decide(message)
        try:
            if handling.action is Action.DEAD_LETTER:
                await self._publish_copy(channel, message, self._settings.dead_letter_queue, {
                    REASON_HEADER: handling.reason.value if handling.reason else "unknown",
                    DETAIL_HEADER: handling.detail,
                    SOURCE_HEADER: self._settings.intake_queue,
                    **({FAILURES_HEADER: failures} if failures else {}),
                })
            elif handling.action is Action.RETRY:
                await self._publish_copy(channel, message, self._settings.retry_queue, {
                    RETRIES_HEADER: _counted(message, RETRIES_HEADER) + 1,
                    **({FAILURES_HEADER: failures} if failures else {}),
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
        self._settled += 1
        if self._careful and self._settled >= self._settings.prefetch:
            self._widen.set()

    async def _decide(self, message: AbstractIncomingMessage) -> tuple[Handling, int]:
        """What to do with the message, and how many times its handling has failed so far."""
        failures = _counted(message, FAILURES_HEADER)
        broken = frames.undecodable(message.headers)
        if broken is not None:
            _log.warning("message dead-lettered: AMQP properties the client cannot decode (%s)", broken)
            detail = f"AMQP properties the consumer cannot decode, left out of this copy: {broken}"
            reason = DeadLetterReason.UNDECODABLE_PROPERTIES
            return Handling(Action.DEAD_LETTER, "dead_lettered", reason, detail), failures
        try:
            return await self._handler.handle(message.body), failures
        except Exception as exc:  # a bug must not hold the message (and a prefetch slot) for ever
            failures += 1
            limit = self._settings.max_handling_failures
            # The traceback may quote the message (an exception's text): redacted like any text of the client's.
            _log.error("message handling failed (%d of %d tries):\n%s", failures, limit,
                       mask_phones("".join(traceback.format_exception(exc)), blank_numbers=True))
            if failures >= limit:
                detail = f"handling failed {failures} times ({type(exc).__name__}); the consumer's log has each"
                return Handling(Action.DEAD_LETTER, "dead_lettered", DeadLetterReason.HANDLING_FAILED, detail), failures
            return Handling(Action.RETRY, "failed", detail="internal error"), failures

    async def _publish_copy(
        self, channel: AbstractChannel, message: AbstractIncomingMessage, queue: str, ours: dict[str, Any]
    ) -> None:
        """The message as it came, plus `ours` headers, persistent, on `queue`; returns once the broker
        confirms. The bot's headers that would take the copy over the broker's frame limit (or that
        cannot be encoded again) are left out, largest first, and the detail header says so."""
        theirs = {k: v for k, v in (message.headers or {}).items() if k not in _NOT_COPIED}
        copy = self._copy(message, {**theirs, **ours})
        candidates, dropped = _largest_first(theirs), []
        while candidates and _header_frame_bytes(copy) > self._frame_max:
            dropped.append(candidates.pop(0))
            kept = {k: v for k, v in theirs.items() if k not in dropped}
            copy = self._copy(message, {**kept, **ours, **_trimmed(ours, dropped, self._frame_max)})
        if dropped:
            _log.warning("copy to %s leaves out %d of the message's headers: over the broker's frame limit",
                         queue, len(dropped))
        await channel.default_exchange.publish(
            copy, routing_key=queue, mandatory=True, timeout=self._settings.publish_timeout_seconds
        )

    def _copy(self, message: AbstractIncomingMessage, headers: dict[str, Any]) -> aio_pika.Message:
        return aio_pika.Message(
            message.body,
            headers=headers,
            content_type=message.content_type,
            content_encoding=message.content_encoding,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            timestamp=message.timestamp,
            type=message.type,
            app_id=message.app_id,
            delivery_mode=aio_pika.DeliveryMode.PERSISTENT,
        )

    async def _pause(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)


async def _frame_max(channel: AbstractChannel) -> int:
    """The frame size the connection negotiated (0 means no limit: RabbitMQ's default stands in)."""
    try:
        underlay = await channel.get_underlay_channel()
        negotiated = int(underlay.connection.connection_tune.frame_max)
    except (AttributeError, TypeError, ValueError):
        return _DEFAULT_FRAME_MAX
    return negotiated or _DEFAULT_FRAME_MAX


def _header_frame_bytes(message: aio_pika.Message) -> int:
    """The size of the message's content-header frame on the wire; a header that cannot be
    encoded counts as too large, so it is left out like one."""
    try:
        payload = ContentHeader(body_size=len(message.body), properties=message.properties).marshal()
    except (ValueError, TypeError, RecursionError, OverflowError):
        return 1 << 62
    return len(payload) + _FRAME_OVERHEAD


def _largest_first(headers: dict[str, Any]) -> list[str]:
    def size(name: str) -> int:
        try:
            return len(encode.field_table({name: headers[name]}))
        except (ValueError, TypeError, RecursionError, OverflowError):
            return 1 << 62  # cannot be encoded again: the first to go

    return sorted(headers, key=size, reverse=True)


def _trimmed(ours: dict[str, Any], dropped: list[str], frame_max: int) -> dict[str, Any]:
    """The detail header of a dead letter, extended with the headers left out (their names redacted
    like any text of the client's); a delayed copy has no detail header and gets none."""
    if DETAIL_HEADER not in ours:
        return {}
    names = mask_phones(", ".join(dropped), blank_numbers=True)[:200]
    note = f"{len(dropped)} of the message's headers left out of this copy (over the broker's frame limit of " \
           f"{frame_max} bytes): {names}"
    detail = f"{ours[DETAIL_HEADER]}; {note}" if ours[DETAIL_HEADER] else note
    return {DETAIL_HEADER: detail[:1000]}


def _counted(message: AbstractIncomingMessage, header: str) -> int:
    value = (message.headers or {}).get(header, 0)
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else 0


def _count(handling: Handling) -> None:
    metrics.record_queue_message(handling.outcome, handling.reason.value if handling.reason is not None else None)
