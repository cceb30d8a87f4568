"""The relay's ledger cost and its batches: a pass claims every channel's due events of many payouts and notes
their first messages in one transaction, and reports back in one more, whatever the batches hold; an outage in the
middle of a batch hands the rest back, and they are delivered later, in order."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta

import pytest
import sqlalchemy as sa

from ledger import Ledger
from notify import AnalyticsChannel, MemorySink, Relay, TelegramChannel, TelegramClient
from payouts.events import Outgoing, UserMessage
from tests.ledger.helpers import make_req, reserved
from tests.notify.conftest import Clock
from tests.notify.test_relay import bot_calls, caught_up, paid, user_message
from tests.sandbox_fixtures import SandboxHandle


class Commits:
    """Ledger transactions committed while `counting` (reads commit too: each is a transaction)."""

    def __init__(self, ledger: Ledger) -> None:
        self.count = 0
        self._on = False
        sa.event.listen(ledger.engine.sync_engine, "commit", self._commit)

    def _commit(self, _conn: object) -> None:
        if self._on:
            self.count += 1

    @contextmanager
    def counting(self) -> Iterator[None]:
        self._on = True
        try:
            yield
        finally:
            self._on = False


@pytest.mark.postgres
@pytest.mark.parametrize("payouts", [3, 40])
async def test_a_pass_over_every_channel_costs_two_transactions_whatever_its_batches_hold(
    pg_ledger: Ledger, telegram: TelegramClient, sandbox: SandboxHandle, payouts: int
) -> None:
    ledger = pg_ledger
    sink = MemorySink()
    bot, analytics = TelegramChannel(telegram), AnalyticsChannel(sink)
    relay = Relay(ledger, [bot, analytics], batch_size=50)
    await ledger.outbox.register([bot.name, analytics.name])
    commits = Commits(ledger)
    pids = [await reserved(ledger) for _ in range(payouts)]

    claimed = {bot.name: payouts, analytics.name: payouts}
    with commits.counting():  # PENDING: the claim with the first-message note, the report; both channels
        assert await relay.deliver_pass() == claimed
    pending = commits.count
    for pid in pids:
        await paid(ledger, pid)
    with commits.counting():  # SUCCESS: edits, no first message to note
        assert await relay.deliver_pass() == claimed

    assert (pending, commits.count) == (2, 2 + 2)  # the same for 3 payouts and for 40
    calls = await bot_calls(sandbox)
    assert sorted(c["method"] for c in calls) == ["editMessageText"] * payouts + ["sendMessage"] * payouts
    assert all(c["http_status"] == 200 for c in calls)
    sent = {c["chat_id"]: c["message_id"] for c in calls if c["method"] == "sendMessage"}
    for pid in pids:
        row = await ledger.payouts.get(pid)
        assert row is not None and row.telegram_message_id == sent[row.telegram_id]
    assert len(sink.events) == 2 * payouts
    assert await caught_up(ledger)


class _OutageMidBatch:
    """The Telegram channel, with Telegram going down (one 503) just before the `at`-th delivery."""

    def __init__(self, inner: TelegramChannel, sandbox: SandboxHandle, at: int) -> None:
        self.name = inner.name
        self._inner = inner
        self._sandbox = sandbox
        self._left = at

    def prepare(self, batch: Sequence[Outgoing]) -> set[str]:
        return self._inner.prepare(batch)

    async def deliver(self, outgoing: Outgoing) -> UserMessage | None:
        self._left -= 1
        if self._left == 0:
            await self._sandbox.set_faults({"telegram_fail": {"probability": 1.0, "times": 1, "status": 503}})
        return await self._inner.deliver(outgoing)


async def test_an_outage_mid_batch_hands_the_rest_back_and_they_are_delivered_later_in_order(
    ledger: Ledger, telegram: TelegramClient, sandbox: SandboxHandle, clock: Clock
) -> None:
    bot = _OutageMidBatch(TelegramChannel(telegram), sandbox, at=3)
    relay = Relay(ledger, [bot], batch_size=10, retry_first=timedelta(seconds=10))
    await ledger.outbox.register([bot.name])
    reqs = [make_req() for _ in range(5)]
    for req in reqs:
        await ledger.payouts.reserve(req)

    assert await relay.deliver_pass() == {bot.name: 5}  # two sent, the third meets the outage, two handed back untried
    sent = [c["chat_id"] for c in await bot_calls(sandbox) if c["http_status"] == 200]
    assert sent == [r.telegram_id for r in reqs[:2]]
    # The first messages noted for the three were not sent: the notes went, so each is sent later, once.
    assert [await user_message(ledger, r.payout_id) for r in reqs[2:]] == [None, None, None]
    [backlog] = await ledger.outbox.backlog()
    assert backlog.pending == 3
    assert await relay.deliver_pass() == {bot.name: 0}  # the whole channel backs off, not only the failed event
    await paid(ledger, reqs[2].payout_id)  # its outcome waits for its "processing"
    await paid(ledger, reqs[4].payout_id)

    clock.advance(timedelta(seconds=10))
    assert await relay.deliver_pass() == {bot.name: 3}  # the PENDING events again, oldest first
    assert await relay.deliver_pass() == {bot.name: 2}  # then the outcomes
    assert await caught_up(ledger)

    calls = [c for c in await bot_calls(sandbox) if c["http_status"] == 200]
    for req in reqs:
        mine = [(c["method"], "Обробляємо" in c["text"]) for c in calls if c["chat_id"] == req.telegram_id]
        expected = [("sendMessage", True)]
        if req in (reqs[2], reqs[4]):
            expected.append(("editMessageText", False))
        assert mine == expected, req.payout_id
        message_id = await user_message(ledger, req.payout_id)
        assert message_id is not None and message_id > 0
    assert [c["method"] for c in await bot_calls(sandbox) if c["http_status"] == 503] == ["sendMessage"]
