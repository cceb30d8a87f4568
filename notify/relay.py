"""The outbox relay: delivers the ledger's payout events to each channel, outside Temporal history.

One loop per channel, so a slow or broken channel never holds up another. Each pass claims a bounded
batch of due events of many payouts (`ledger.outbox.claim`: leased, safe with a relay in every worker
process), notes the first user messages the channel may send (`EventChannel.prepare`, one transaction),
delivers the events one by one and reports the whole batch back in one transaction
(`ledger.outbox.settle`): at most three ledger transactions per batch, whatever its size.
`ChannelUnavailable` backs the channel off: the event is tried again after a growing pause, and the rest
of the batch waits as long. Delivery is at least once (a relay that dies mid-batch, or before its
report, leaves its lease to run out); `event_id` lets a channel drop repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from ledger import Ledger, OutboxDelivery, OutboxFailure, OutboxReport
from payouts.events import MESSAGE_MAYBE_SENT, ChannelUnavailable, EventChannel, Outgoing, UserMessage
from runtime import metrics
from runtime.log_context import ids_of_workflow, payout_context
from runtime.settings import OutboxSettings

_log = logging.getLogger("payouts.notify.relay")
_BACKLOG_EVERY_SECONDS = 15.0
_STOP_WAIT_SECONDS = 30.0


class Relay:
    """Delivers outbox events to `channels` until stopped. `running()` starts and stops it."""

    def __init__(
        self,
        ledger: Ledger,
        channels: Sequence[EventChannel],
        *,
        interval: timedelta = timedelta(seconds=1),
        batch_size: int = 50,
        lease: timedelta = timedelta(seconds=60),
        retry_first: timedelta = timedelta(seconds=5),
        retry_max: timedelta = timedelta(minutes=5),
    ) -> None:
        names = [channel.name for channel in channels]
        if len(set(names)) != len(names):
            raise ValueError(f"channel names must be unique: {names}")
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        self._ledger = ledger
        self.channels = list(channels)
        self._interval = interval.total_seconds()
        self._batch = batch_size
        self._lease = lease
        self._retry_first = retry_first
        self._retry_max = retry_max

    @classmethod
    def from_settings(cls, ledger: Ledger, channels: Sequence[EventChannel], settings: OutboxSettings) -> Relay:
        return cls(
            ledger,
            channels,
            interval=timedelta(seconds=settings.relay_interval_seconds),
            batch_size=settings.batch_size,
            lease=timedelta(seconds=settings.lease_seconds),
            retry_first=timedelta(seconds=settings.retry_first_seconds),
            retry_max=timedelta(seconds=settings.retry_max_seconds),
        )

    def backoff(self, attempts: int) -> timedelta:
        """The pause after the `attempts + 1`-th failed attempt: doubling from `retry_first`, at most `retry_max`."""
        pause: timedelta = self._retry_first * (2 ** min(attempts, 30))
        return min(self._retry_max, pause)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Register the channels, deliver in the background, and on the way out finish the delivery in
        hand, hand the rest of each batch back, and stop."""
        await self._ledger.outbox.register([channel.name for channel in self.channels])
        stop = asyncio.Event()
        task = asyncio.create_task(self.run(stop), name="outbox-relay")
        try:
            yield
        finally:
            stop.set()
            try:
                await asyncio.wait_for(asyncio.shield(task), _STOP_WAIT_SECONDS)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    async def run(self, stop: asyncio.Event) -> None:
        await asyncio.gather(
            self._watch_backlog(stop), *(self._channel_loop(channel, stop) for channel in self.channels)
        )

    async def deliver_due(self, channel: EventChannel, stop: asyncio.Event | None = None) -> int:
        """One pass for one channel: claim a batch, deliver it and report it back. Returns how many events
        it claimed. Ledger transactions: the claim, the first-message note (only when the channel asks for
        one), and the report."""
        batch = await self._ledger.outbox.claim(channel.name, limit=self._batch, lease=self._lease)
        if not batch:
            return 0
        loop = asyncio.get_running_loop()
        # Stop well inside the lease, so no other relay takes an event while this one still holds it.
        deadline = loop.time() + self._lease.total_seconds() / 2
        first = channel.prepare([_outgoing(d) for d in batch])
        noted = await self._ledger.outbox.mark_first_messages(first)
        report = _Report()
        for i, delivery in enumerate(batch):
            if (stop is not None and stop.is_set()) or loop.time() > deadline:
                report.release(batch[i:], noted)
                break
            event = delivery.event
            outgoing = _outgoing(delivery, first, noted)
            # Every line about this event carries its payout's ids (runtime.log_context).
            with payout_context(telegram_id=event.telegram_id, bill_id=event.bill_id,
                                **ids_of_workflow(event.payout_id)):
                try:
                    message = await channel.deliver(outgoing)
                except ChannelUnavailable as exc:
                    pause = self.backoff(delivery.attempts)
                    report.fail(delivery, str(exc), pause, exc.user_message)
                    report.release(batch[i + 1 :], noted, retry_in=pause)
                    _log.warning("%s unavailable, retrying in %.1f s: %s", channel.name, pause.total_seconds(), exc)
                    break
                except Exception as exc:
                    # A bug, or a channel's own dependency failing: this event waits, the others go on.
                    _log.exception("%s could not deliver %s", channel.name, event.event_id)
                    report.fail(delivery, type(exc).__name__, self.backoff(delivery.attempts))
                    continue
            report.deliver(delivery, message)
        await self._ledger.outbox.settle(report.done())
        metrics.record_outbox_delivered(channel.name, len(report.delivered))
        metrics.record_outbox_failed(channel.name, len(report.failed))
        return len(batch)

    async def _channel_loop(self, channel: EventChannel, stop: asyncio.Event) -> None:
        while not stop.is_set():
            claimed = 0
            try:
                claimed = await self.deliver_due(channel, stop)
            except Exception:
                # The ledger is down (or a bug): what was claimed comes back when its lease runs out.
                _log.exception("outbox relay pass for %s failed", channel.name)
            if claimed < self._batch:  # caught up: wait for new events
                await _sleep(stop, self._interval)

    async def _watch_backlog(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                now = datetime.now(UTC)
                for backlog in await self._ledger.outbox.backlog():
                    age = (now - backlog.oldest_at).total_seconds() if backlog.oldest_at else 0.0
                    metrics.set_outbox_backlog(backlog.channel, backlog.pending, age)
            except Exception:
                _log.warning("outbox backlog not measured (ledger unavailable?)", exc_info=True)
            await _sleep(stop, _BACKLOG_EVERY_SECONDS)


class _Report:
    """A batch's results as the relay goes, for the one report transaction (`ledger.outbox.settle`)."""

    def __init__(self) -> None:
        self.delivered: list[OutboxDelivery] = []
        self.failed: list[OutboxFailure] = []
        self.released: list[OutboxDelivery] = []
        self.release_in = timedelta(0)
        self.user_messages: dict[str, int | None] = {}

    def deliver(self, delivery: OutboxDelivery, message: UserMessage | None) -> None:
        self.delivered.append(delivery)
        self._record(delivery, message)

    def fail(self, delivery: OutboxDelivery, error: str, pause: timedelta, message: UserMessage | None = None) -> None:
        self.failed.append(OutboxFailure(delivery, error=error, retry_in=pause))
        self._record(delivery, message)

    def release(
        self, untried: Sequence[OutboxDelivery], noted: set[str], *, retry_in: timedelta = timedelta(0)
    ) -> None:
        """Hand back what was not tried; a first message noted for it was not sent (the note goes)."""
        self.released.extend(untried)
        self.release_in = retry_in
        for delivery in untried:
            if delivery.event.payout_id in noted:
                self.user_messages[delivery.event.payout_id] = None

    def done(self) -> OutboxReport:
        return OutboxReport(
            delivered=self.delivered,
            failed=self.failed,
            released=self.released,
            release_in=self.release_in,
            user_messages=self.user_messages,
        )

    def _record(self, delivery: OutboxDelivery, message: UserMessage | None) -> None:
        if message is not None:
            self.user_messages[delivery.event.payout_id] = message.id


def _outgoing(delivery: OutboxDelivery, first: set[str] | None = None, noted: set[str] | None = None) -> Outgoing:
    """The event as the channel gets it. A payout whose first message the channel asked for holds a note
    by now: this relay's (`first_message`: send it), or one recorded since the claim (treated as sent)."""
    pid = delivery.event.payout_id
    if first is not None and pid in first:
        return Outgoing(delivery.event, MESSAGE_MAYBE_SENT, first_message=noted is not None and pid in noted)
    return Outgoing(delivery.event, delivery.telegram_message_id)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, or return early when `stop` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
