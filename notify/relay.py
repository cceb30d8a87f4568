"""The outbox relay: delivers the ledger's payout events to each channel, outside Temporal history.

A pass costs two ledger transactions for all channels together, whatever the batches hold. The claim
(`ledger.outbox.claim`: leased, safe with a relay in every worker process) takes a bounded batch of due
events of many payouts for each channel and, in the same transaction, notes the first user messages the
channels may send (`EventChannel.prepare`); the channels then deliver their batches concurrently, each
event by event, so a slow or broken channel does not hold up another's batch; the report
(`ledger.outbox.settle`) records every channel's outcome at once. `ChannelUnavailable` backs the channel
off: the event is tried again after a growing pause, and the rest of its batch waits as long. Delivery
is at least once (a relay that dies mid-pass, or before its report, leaves its lease to run out);
`event_id` lets a channel drop repeats.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Mapping, Sequence, Set
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from ledger import Ledger, OutboxDelivery, OutboxFailure, OutboxRelease, OutboxReport
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
        await asyncio.gather(self._watch_backlog(stop), self._pass_loop(stop))

    async def deliver_pass(self, stop: asyncio.Event | None = None) -> dict[str, int]:
        """One pass over every channel: claim their due events and note the first messages they may send
        (one transaction), deliver each channel's batch (the channels concurrently), and report them all
        back (one transaction). Returns how many events each channel claimed."""
        asked: dict[str, set[str]] = {}

        def first_messages(batches: Mapping[str, Sequence[OutboxDelivery]]) -> set[str]:
            asked.update(self._prepare(batches))
            return set().union(*asked.values())

        names = [channel.name for channel in self.channels]
        claim = await self._ledger.outbox.claim(
            names, limit=self._batch, lease=self._lease, first_messages=first_messages
        )
        claimed = {name: len(claim.batches[name]) for name in names}
        busy = [channel for channel in self.channels if claim.batches[channel.name]]
        if not busy:
            return claimed
        # Stop well inside the lease, so no other relay takes an event while this one still holds it.
        deadline = asyncio.get_running_loop().time() + self._lease.total_seconds() / 2
        reports = await asyncio.gather(
            *(
                self._deliver(c, claim.batches[c.name], asked[c.name], claim.noted & asked[c.name], deadline, stop)
                for c in busy
            )
        )
        await self._ledger.outbox.settle(_Report.merged(reports))
        for channel, report in zip(busy, reports, strict=True):
            metrics.record_outbox_delivered(channel.name, len(report.delivered))
            metrics.record_outbox_failed(channel.name, len(report.failed))
        return claimed

    def _prepare(self, batches: Mapping[str, Sequence[OutboxDelivery]]) -> dict[str, set[str]]:
        """Each channel's payouts whose first message its batch may send. One note is one message: a payout
        two channels name is the first one's."""
        asked: dict[str, set[str]] = {}
        taken: set[str] = set()
        for channel in self.channels:
            asked[channel.name] = channel.prepare([_outgoing(d) for d in batches[channel.name]]) - taken
            taken |= asked[channel.name]
        return asked

    async def _deliver(
        self,
        channel: EventChannel,
        batch: Sequence[OutboxDelivery],
        first: Set[str],
        noted: Set[str],
        deadline: float,
        stop: asyncio.Event | None,
    ) -> _Report:
        """Deliver one channel's batch in order, until the deadline, a stop, or the channel is unavailable
        (then the rest is handed back); `first`: the payouts the channel asked to send a first message,
        `noted`: those of them the claim noted."""
        loop = asyncio.get_running_loop()
        report = _Report()
        for i, delivery in enumerate(batch):
            if (stop is not None and stop.is_set()) or loop.time() > deadline:
                report.release(batch[i:], noted)
                break
            event = delivery.event
            outgoing = _outgoing(delivery, first, noted)
            # Every line about this event carries its payout's ids (runtime.log_context).
            with payout_context(
                telegram_id=event.telegram_id, bill_id=event.bill_id, **ids_of_workflow(event.payout_id)
            ):
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
        return report

    async def _pass_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            full = False
            try:
                claimed = await self.deliver_pass(stop)
                full = any(n >= self._batch for n in claimed.values())
            except Exception:
                # The ledger is down (or a bug): what was claimed comes back when its lease runs out.
                _log.exception("outbox relay pass failed")
            if not full:  # caught up: wait for new events (a channel with a full batch goes again at once)
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
    """A channel's batch results as the relay goes, for the pass's one report transaction
    (`ledger.outbox.settle`)."""

    def __init__(self) -> None:
        self.delivered: list[OutboxDelivery] = []
        self.failed: list[OutboxFailure] = []
        self.released: list[OutboxRelease] = []
        self.user_messages: dict[str, int | None] = {}

    def deliver(self, delivery: OutboxDelivery, message: UserMessage | None) -> None:
        self.delivered.append(delivery)
        self._record(delivery, message)

    def fail(self, delivery: OutboxDelivery, error: str, pause: timedelta, message: UserMessage | None = None) -> None:
        self.failed.append(OutboxFailure(delivery, error=error, retry_in=pause))
        self._record(delivery, message)

    def release(
        self, untried: Sequence[OutboxDelivery], noted: Set[str], *, retry_in: timedelta = timedelta(0)
    ) -> None:
        """Hand back what was not tried; a first message noted for it was not sent (the note goes)."""
        self.released.extend(OutboxRelease(delivery, retry_in) for delivery in untried)
        for delivery in untried:
            if delivery.event.payout_id in noted:
                self.user_messages[delivery.event.payout_id] = None

    @staticmethod
    def merged(reports: Sequence[_Report]) -> OutboxReport:
        """The channels' reports as one (each first-message note is one channel's: no payout twice)."""
        return OutboxReport(
            delivered=[d for r in reports for d in r.delivered],
            failed=[f for r in reports for f in r.failed],
            released=[d for r in reports for d in r.released],
            user_messages={pid: mid for r in reports for pid, mid in r.user_messages.items()},
        )

    def _record(self, delivery: OutboxDelivery, message: UserMessage | None) -> None:
        if message is not None:
            self.user_messages[delivery.event.payout_id] = message.id


def _outgoing(delivery: OutboxDelivery, first: Set[str] | None = None, noted: Set[str] | None = None) -> Outgoing:
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
