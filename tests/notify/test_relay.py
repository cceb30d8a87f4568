"""The outbox relay delivering real ledger events to the sandbox's fake Telegram Bot API (over HTTP) and
to analytics: "processing" edited into the outcome, a Telegram outage that only delays, each event once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import timedelta
from typing import Any

import pytest

from ledger import Ledger, OutboxReport
from notify import AnalyticsChannel, MemorySink, Relay, TelegramChannel, TelegramClient
from payouts.events import MESSAGE_MAYBE_SENT, Outgoing, PayoutEvent, UserMessage
from payouts.status import PayoutStatus as S
from tests.ledger.helpers import claim_channel, make_req, reserved
from tests.notify.conftest import Clock
from tests.sandbox_fixtures import SandboxHandle

FAST = {"interval": timedelta(milliseconds=20), "retry_first": timedelta(milliseconds=50)}


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not await check():
            await asyncio.sleep(0.02)


async def paid(ledger: Ledger, pid: str) -> None:
    attempt = await ledger.attempts.begin(pid, 1)
    await ledger.attempts.finish(attempt.id, "answered", bill_id=f"B-{pid}")
    await ledger.callbacks.set_bill_id(pid, f"B-{pid}")
    await ledger.payouts.transition(pid, S.PAID, portmone_status="PAYED")


async def bot_calls(sandbox: SandboxHandle) -> list[dict[str, Any]]:
    return await sandbox.records("telegram")


async def user_message(ledger: Ledger, pid: str) -> int | None:
    row = await ledger.payouts.get(pid)
    assert row is not None
    return row.telegram_message_id


async def caught_up(ledger: Ledger) -> bool:
    return all(b.pending == 0 for b in await ledger.outbox.backlog())


async def relay_to_both(ledger: Ledger, telegram: TelegramClient, **options: Any) -> tuple[Relay, MemorySink]:
    """A relay to the Telegram and analytics channels, both registered, and the analytics events it sends."""
    sink = MemorySink()
    relay = Relay(ledger, [TelegramChannel(telegram), AnalyticsChannel(sink)], **options)
    await ledger.outbox.register([channel.name for channel in relay.channels])
    return relay, sink


async def test_the_user_hears_processing_then_that_message_turns_into_the_outcome(
    ledger: Ledger, telegram: TelegramClient, sandbox: SandboxHandle
) -> None:
    sink = MemorySink()
    relay = Relay(ledger, [TelegramChannel(telegram), AnalyticsChannel(sink)], **FAST)
    req = make_req(amount_kopecks=2_500)
    async with relay.running():
        await ledger.payouts.reserve(req)
        await eventually(lambda: caught_up(ledger))
        [sent] = await bot_calls(sandbox)
        message_id = await user_message(ledger, req.payout_id)

        await paid(ledger, req.payout_id)
        await eventually(lambda: caught_up(ledger))

    calls = await bot_calls(sandbox)
    assert [(c["method"], c["chat_id"], c["http_status"]) for c in calls] == [
        ("sendMessage", req.telegram_id, 200),
        ("editMessageText", req.telegram_id, 200),
    ]
    assert sent["message_id"] == message_id == calls[1]["message_id"]
    assert "Обробляємо" in sent["text"] and "25.00" in sent["text"]
    assert "зараховано" in calls[1]["text"]
    assert [e.name for e in sink.events] == ["payout_initiated", "payout_success"]


async def test_a_telegram_outage_delays_the_message_and_it_is_sent_once(
    ledger: Ledger, telegram: TelegramClient, sandbox: SandboxHandle, clock: Clock
) -> None:
    await sandbox.set_faults({"telegram_fail": {"probability": 1.0, "times": 2, "status": 503}})
    relay, sink = await relay_to_both(ledger, telegram, retry_first=timedelta(seconds=10))
    pid = await reserved(ledger, language="en")

    idle = {"telegram": 0, "analytics": 0}
    # Tried: Telegram answers 503; the other channel is not held up.
    assert await relay.deliver_pass() == {"telegram": 1, "analytics": 1}
    assert await relay.deliver_pass() == idle  # backing off: not tried again yet
    clock.advance(timedelta(seconds=10))
    await relay.deliver_pass()  # 503 again: the pause doubles
    clock.advance(timedelta(seconds=10))
    assert await relay.deliver_pass() == idle
    clock.advance(timedelta(seconds=10))
    await relay.deliver_pass()
    clock.advance(timedelta(hours=1))
    await relay.deliver_pass()

    calls = await bot_calls(sandbox)
    assert [(c["method"], c["http_status"]) for c in calls] == [("sendMessage", 503)] * 2 + [("sendMessage", 200)]
    assert "Processing your top-up" in calls[-1]["text"]
    assert await user_message(ledger, pid) == calls[-1]["message_id"]
    assert [e.name for e in sink.events] == ["payout_initiated"]
    assert await caught_up(ledger)


async def test_analytics_receives_each_event_once_while_telegram_comes_and_goes(
    ledger: Ledger, telegram: TelegramClient, sandbox: SandboxHandle
) -> None:
    await sandbox.set_faults({"telegram_fail": {"probability": 0.5, "times": 6, "status": 502}})
    sink = MemorySink()
    # Two relays (two worker processes) on the same outbox.
    relays = [Relay(ledger, [TelegramChannel(telegram), AnalyticsChannel(sink)], **FAST) for _ in range(2)]
    async with relays[0].running(), relays[1].running():
        pids = [await reserved(ledger) for _ in range(4)]
        await paid(ledger, pids[0])
        await ledger.payouts.transition(pids[1], S.CANCELLED, reason="operator:duplicate")
        await ledger.payouts.transition(pids[2], S.BILL_REQUESTED)
        await ledger.payouts.transition(pids[2], S.MANUAL_REVIEW, reason="callback_timeout")
        await eventually(lambda: caught_up(ledger))

    written: list[PayoutEvent] = [e for pid in pids for e in await ledger.outbox.events(pid)]
    assert sorted(e.event_id for e in sink.events) == sorted(e.event_id for e in written)  # each once
    names = {e.payout_id: [x.name for x in sink.events if x.payout_id == e.payout_id] for e in written}
    assert names == {
        pids[0]: ["payout_initiated", "payout_success"],
        pids[1]: ["payout_initiated", "payout_failure"],
        pids[2]: ["payout_initiated", "payout_timeout"],
        pids[3]: ["payout_initiated"],
    }
    sent = [c for c in await bot_calls(sandbox) if c["http_status"] == 200]
    assert sorted(c["method"] for c in sent) == ["editMessageText"] * 3 + ["sendMessage"] * 4  # one message each


async def test_a_channel_that_is_down_holds_up_neither_the_other_nor_its_own_events_for_long(
    ledger: Ledger, telegram: TelegramClient, sandbox: SandboxHandle, clock: Clock
) -> None:
    await sandbox.set_faults({"telegram_fail": {"probability": 1.0, "times": 1, "status": 503}})
    relay, sink = await relay_to_both(ledger, telegram, retry_first=timedelta(seconds=10))
    reqs = [make_req() for _ in range(3)]
    for req in reqs:
        await ledger.payouts.reserve(req)

    # Telegram is down at its first event (ChannelUnavailable): its batch waits, analytics gets all three.
    assert await relay.deliver_pass() == {"telegram": 3, "analytics": 3}
    assert sorted(e.payout_id for e in sink.events) == sorted(r.payout_id for r in reqs)
    assert [c["http_status"] for c in await bot_calls(sandbox)] == [503]
    assert {b.channel: b.pending for b in await ledger.outbox.backlog()} == {"telegram": 3, "analytics": 0}

    clock.advance(timedelta(seconds=10))  # its back-off over, Telegram gets its events
    assert await relay.deliver_pass() == {"telegram": 3, "analytics": 0}
    sent = [c["chat_id"] for c in await bot_calls(sandbox) if c["http_status"] == 200]
    assert sent == [r.telegram_id for r in reqs]
    assert len(sink.events) == 3
    assert await caught_up(ledger)


async def test_a_receipt_over_the_limit_is_told_why(
    ledger: Ledger, telegram: TelegramClient, sandbox: SandboxHandle
) -> None:
    bot = TelegramChannel(telegram)
    await ledger.outbox.register([bot.name])
    first = make_req(user_daily_limit=1)
    await ledger.payouts.reserve(first)
    over = make_req(user_key=first.user_key, user_daily_limit=1)
    await ledger.payouts.reserve(over)

    assert await Relay(ledger, [bot]).deliver_pass() == {bot.name: 2}
    texts = {c["chat_id"]: c["text"] for c in await bot_calls(sandbox)}
    assert "Обробляємо" in texts[first.telegram_id]
    assert "ліміт" in texts[over.telegram_id]


class Held:
    """A channel that holds the first event it gets until the test lets it go."""

    name = "held"

    def __init__(self) -> None:
        self.seen: list[str] = []
        self.gate = asyncio.Event()

    def prepare(self, batch: Sequence[Outgoing]) -> set[str]:
        return set()

    async def deliver(self, outgoing: Outgoing) -> UserMessage | None:
        self.seen.append(outgoing.event.event_id)
        await self.gate.wait()
        return None


async def test_a_slow_channel_does_not_hold_up_the_others_deliveries_in_the_same_pass(ledger: Ledger) -> None:
    held, sink = Held(), MemorySink()
    analytics = AnalyticsChannel(sink)
    relay = Relay(ledger, [held, analytics])
    await ledger.outbox.register([held.name, analytics.name])
    for _ in range(3):
        await reserved(ledger)

    running = asyncio.create_task(relay.deliver_pass())

    async def analytics_done() -> bool:
        return len(sink.events) == 3

    await eventually(analytics_done)  # while the held channel still holds its first event
    assert (len(held.seen), running.done()) == (1, False)
    held.gate.set()
    assert await running == {held.name: 3, analytics.name: 3}
    assert await caught_up(ledger)


async def test_a_stop_finishes_the_event_in_hand_and_hands_back_the_rest_at_once(ledger: Ledger) -> None:
    held = Held()
    relay = Relay(ledger, [held], batch_size=10, **FAST)
    async with relay.running():
        for _ in range(4):
            await reserved(ledger)

        async def started() -> bool:
            return bool(held.seen)

        await eventually(started)
        held.gate.set()  # leaving the block stops the relay: it finishes this one, then hands back three

    [backlog] = await ledger.outbox.backlog()
    again = await claim_channel(ledger, "held")
    assert (len(held.seen), backlog.pending, len(again)) == (1, 3, 3)  # claimable now: no lease to wait out
    assert all(d.attempts == 0 for d in again)


class _StopsBeforeItsReport:
    """A ledger whose first batch report is lost: the worker died between Telegram's answer and the ledger
    write (issue: "Money safety where people ... step in", defect 8)."""

    def __init__(self, inner: Ledger) -> None:
        self._inner = inner
        self.outbox = self
        self.lost = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner.outbox, name)

    async def settle(self, report: OutboxReport) -> None:
        if any(mid for mid in report.user_messages.values()) and not self.lost:
            self.lost += 1
            raise RuntimeError("worker stopped before it recorded the message id")
        await self._inner.outbox.settle(report)


async def test_a_relay_that_stops_after_sending_never_sends_a_second_processing_message(
    ledger: Ledger, telegram: TelegramClient, sandbox: SandboxHandle, clock: Clock
) -> None:
    crashing = _StopsBeforeItsReport(ledger)
    bot = TelegramChannel(telegram)
    await ledger.outbox.register([bot.name])
    req = make_req(amount_kopecks=2_500)
    await ledger.payouts.reserve(req)
    relay = Relay(crashing, [bot], retry_first=timedelta(0))  # type: ignore[arg-type]

    with pytest.raises(RuntimeError):
        await relay.deliver_pass()  # sent, then the worker "stopped" before its report
    clock.advance(timedelta(seconds=61))  # its lease runs out
    assert await relay.deliver_pass() == {bot.name: 1}  # the event comes again
    await paid(ledger, req.payout_id)
    await relay.deliver_pass()

    calls = [c for c in await bot_calls(sandbox) if c["http_status"] == 200]
    texts = [c["text"] for c in calls]
    assert crashing.lost == 1
    assert sum("Обробляємо" in text for text in texts) == 1, texts  # never a second "processing"
    assert "зараховано" in texts[-1]  # the outcome reaches the user, as a message of its own
    assert await caught_up(ledger)


class _ReadsTheLedgerFirst:
    """The Telegram channel, reading the payout's message id from the ledger (as another process would)
    before each first message it sends."""

    def __init__(self, inner: TelegramChannel, ledger: Ledger) -> None:
        self.name = inner.name
        self._inner = inner
        self._ledger = ledger
        self.before_first: list[int | None] = []

    def prepare(self, batch: Sequence[Outgoing]) -> set[str]:
        return self._inner.prepare(batch)

    async def deliver(self, outgoing: Outgoing) -> UserMessage | None:
        if outgoing.first_message:
            self.before_first.append(await user_message(self._ledger, outgoing.event.payout_id))
        return await self._inner.deliver(outgoing)


async def test_the_first_message_note_is_committed_before_the_message_is_sent(
    ledger: Ledger, telegram: TelegramClient, sandbox: SandboxHandle
) -> None:
    bot, analytics = _ReadsTheLedgerFirst(TelegramChannel(telegram), ledger), AnalyticsChannel(MemorySink())
    relay = Relay(ledger, [bot, analytics])
    await ledger.outbox.register([bot.name, analytics.name])
    pids = [await reserved(ledger) for _ in range(3)]

    assert await relay.deliver_pass() == {bot.name: 3, analytics.name: 3}
    assert bot.before_first == [MESSAGE_MAYBE_SENT] * 3
    sent = [c["message_id"] for c in await bot_calls(sandbox) if c["method"] == "sendMessage"]
    assert [await user_message(ledger, pid) for pid in pids] == sent  # the report put the ids in its place
