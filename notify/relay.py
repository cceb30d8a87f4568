"""The outbox relay: delivers the ledger's payout events to each channel, outside Temporal history.

One loop per channel, so a slow or broken channel never holds up another. Each pass claims a bounded
batch of due events (`ledger.outbox.claim`: leased, safe with a relay in every worker process),
delivers them one by one and reports each back. `ChannelUnavailable` backs the channel off: the event
is tried again after a growing pause, and the rest of the batch waits as long. Delivery is at least
once (a relay that dies mid-batch leaves its lease to run out); `event_id` lets a channel drop repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from ledger import Ledger, OutboxDelivery
from payouts.events import ChannelUnavailable, EventChannel
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
        """One pass for one channel: claim a batch and deliver it. Returns how many events it claimed."""
        batch = await self._ledger.outbox.claim(channel.name, limit=self._batch, lease=self._lease)
        loop = asyncio.get_running_loop()
        # Stop well inside the lease, so no other relay takes an event while this one still holds it.
        deadline = loop.time() + self._lease.total_seconds() / 2
        for i, delivery in enumerate(batch):
            if (stop is not None and stop.is_set()) or loop.time() > deadline:
                await self._ledger.outbox.release(batch[i:])
                break
            event = delivery.event
            # Every line about this event carries its payout's ids (runtime.log_context).
            with payout_context(telegram_id=event.telegram_id, bill_id=event.bill_id,
                                **ids_of_workflow(event.payout_id)):
                try:
                    await channel.deliver(event)
                except ChannelUnavailable as exc:
                    pause = await self._failed(delivery, str(exc))
                    await self._ledger.outbox.release(batch[i + 1 :], retry_in=pause)
                    _log.warning("%s unavailable, retrying in %.1f s: %s", channel.name, pause.total_seconds(), exc)
                    break
                except Exception as exc:
                    # A bug, or the ledger failing inside the channel: this event waits, the others go on.
                    _log.exception("%s could not deliver %s", channel.name, event.event_id)
                    await self._failed(delivery, type(exc).__name__)
                    continue
            await self._ledger.outbox.delivered(delivery)
            metrics.record_outbox_delivered(channel.name)
        return len(batch)

    async def _failed(self, delivery: OutboxDelivery, error: str) -> timedelta:
        pause = self.backoff(delivery.attempts)
        metrics.record_outbox_failed(delivery.channel)
        await self._ledger.outbox.failed(delivery, error=error, retry_in=pause)
        return pause

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


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    """Sleep, or return early when `stop` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
