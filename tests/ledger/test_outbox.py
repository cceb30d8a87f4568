"""The transactional outbox (ledger.outbox) on SQLite and PostgreSQL: an event is written exactly when the
status change it reports commits, and each channel claims, delivers and retries its own copy."""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from ledger import IllegalTransition, Ledger, OutboxDelivery, OutboxFailure, OutboxRelease, OutboxReport
from ledger.schema import outbox, outbox_deliveries
from payouts.events import MESSAGE_MAYBE_SENT
from payouts.events import PayoutEventKind as K
from payouts.rejection import RejectionReason
from payouts.status import PayoutStatus as S
from tests.ledger.conftest import clear
from tests.ledger.helpers import claim_channel, make_req, reserved

LEASE = timedelta(seconds=60)


class Clock:
    """The ledger's clock, moved by hand (back-off and leases without waiting)."""

    def __init__(self) -> None:
        self.now = datetime.now(UTC)

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
async def clock() -> Clock:
    return Clock()


@pytest.fixture
async def timed(db_url: str, clock: Clock) -> AsyncIterator[Ledger]:
    """A ledger on the hand-moved clock, with the `telegram` and `analytics` channels registered."""
    led = Ledger.from_url(db_url, clock=clock)
    await clear(led)
    await led.outbox.register(["telegram", "analytics"])
    try:
        yield led
    finally:
        await led.aclose()


async def paid(ledger: Ledger, pid: str, bill_id: str) -> None:
    attempt = await ledger.attempts.begin(pid, 1)
    await ledger.attempts.finish(attempt.id, "answered", bill_id=bill_id)
    await ledger.callbacks.set_bill_id(pid, bill_id)
    await ledger.payouts.transition(pid, S.PAID, portmone_status="PAYED")


# ---- what is written --------------------------------------------------------------------------------


async def test_a_reservation_writes_one_pending_event_with_what_the_user_needs(ledger: Ledger) -> None:
    req = make_req(language="en", amount_kopecks=2_500)
    await ledger.payouts.reserve(req)
    await ledger.payouts.reserve(req)  # the same owner again (an activity retry): the stored answer, no new event

    events = await ledger.outbox.events(req.payout_id)
    assert [(e.kind, e.status, e.event_id) for e in events] == [
        (K.PENDING, S.RESERVED, f"{req.payout_id}:1:payout_pending")
    ]
    event = events[0]
    assert (event.payout_id, event.receipt_id, event.telegram_id, event.language, event.amount_kopecks) == (
        req.payout_id,
        req.receipt_id,
        req.telegram_id,
        "en",
        2_500,
    )
    assert event.occurred_at.tzinfo is not None


async def test_the_outbox_holds_no_phone_number(ledger: Ledger) -> None:
    req = make_req()
    await ledger.payouts.reserve(req)
    async with ledger.engine.connect() as conn:
        row = (await conn.execute(sa.select(outbox))).one()._mapping
    assert not {"masked_msisdn", "user_key", "msisdn", "msisdn_token"} & set(row.keys())
    assert all(req.masked_msisdn not in str(value) and req.user_key not in str(value) for value in row.values())


async def test_a_rejected_reservation_tells_the_user_and_a_duplicate_writes_nothing(ledger: Ledger) -> None:
    first = make_req(user_daily_limit=1)
    await ledger.payouts.reserve(first)
    over = make_req(user_key=first.user_key, user_daily_limit=1)
    assert (await ledger.payouts.reserve(over)).reason == RejectionReason.USER_DAILY_LIMIT
    duplicate = make_req(receipt_id=first.receipt_id, owner="another-run", payout_id="payout-other")
    assert not (await ledger.payouts.reserve(duplicate)).accepted

    rejected = await ledger.outbox.events(over.payout_id)
    limit = RejectionReason.USER_DAILY_LIMIT
    assert [(e.kind, e.status, e.reason) for e in rejected] == [(K.FAILED, S.REJECTED, limit)]
    assert await ledger.outbox.events("payout-other") == []
    assert len(await ledger.outbox.events(first.payout_id)) == 1  # the first receipt's own PENDING only


async def test_each_reported_status_change_writes_its_event_and_the_rest_write_none(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    await paid(ledger, pid, "B-1")  # BILL_REQUESTED and AWAITING_CALLBACK on the way: nothing to tell
    events = await ledger.outbox.events(pid)
    assert [(e.kind, e.status, e.bill_id) for e in events] == [
        (K.PENDING, S.RESERVED, None),
        (K.SUCCESS, S.PAID, "B-1"),
    ]
    assert [e.event_id for e in events] == [f"{pid}:1:payout_pending", f"{pid}:2:payout_success"]

    for end in (S.FAILED, S.CANCELLED):
        other = await reserved(ledger)
        await ledger.payouts.transition(other, end, reason="operator:gave up")
        assert [(e.kind, e.status, e.reason) for e in await ledger.outbox.events(other)][1:] == [
            (K.FAILED, end, "operator:gave up")
        ]


async def test_manual_review_carries_its_reason_and_the_error_and_a_replay_writes_nothing(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    attempt = await ledger.attempts.begin(pid, 1)
    await ledger.attempts.finish(attempt.id, "answered", bill_id="B-2")
    await ledger.callbacks.set_bill_id(pid, "B-2")
    args = {"reason": "permanent_error:30", "portmone_status": "REJECTED", "error_code": "30",
            "error_description": "payee blocked"}  # fmt: skip
    await ledger.payouts.transition(pid, S.MANUAL_REVIEW, **args)
    await ledger.payouts.transition(pid, S.MANUAL_REVIEW, **args)  # a retried activity
    await ledger.payouts.transition(pid, S.MANUAL_REVIEW, error_description="payee blocked (2)")  # new fields only

    review = (await ledger.outbox.events(pid))[1:]
    assert [(e.kind, e.reason, e.error_code, e.error_description, e.bill_id) for e in review] == [
        (K.MANUAL_REVIEW, "permanent_error:30", "30", "payee blocked", "B-2")
    ]


async def test_a_refused_transition_writes_no_event(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    with pytest.raises(IllegalTransition):
        await ledger.payouts.transition(pid, S.PAID)
    await ledger.payouts.transition(pid, S.CANCELLED, reason="operator:duplicate")
    with pytest.raises(IllegalTransition):
        await ledger.payouts.transition(pid, S.FAILED)
    assert [e.status for e in await ledger.outbox.events(pid)] == [S.RESERVED, S.CANCELLED]


async def test_the_event_and_its_status_change_commit_together(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    attempt = await ledger.attempts.begin(pid, 1)
    await ledger.attempts.finish(attempt.id, "answered", bill_id="B-3")
    # Another payout's row already holds the id the PAID event will get: writing the event fails.
    squatter = await reserved(ledger)
    async with ledger.engine.begin() as conn:
        await conn.execute(
            sa.update(outbox).where(outbox.c.payout_id == squatter).values(event_id=f"{pid}:2:payout_success")
        )

    with pytest.raises(sa.exc.IntegrityError):
        await ledger.payouts.transition(pid, S.PAID, portmone_status="PAYED")

    row = await ledger.payouts.get(pid)
    assert row is not None and (row.status, row.portmone_status) == (S.AWAITING_CALLBACK, None)
    assert [h.to_status for h in await ledger.payouts.history(pid)][-1] == S.AWAITING_CALLBACK
    assert [e.kind for e in await ledger.outbox.events(pid)] == [K.PENDING]


# ---- delivery ---------------------------------------------------------------------------------------


async def test_each_registered_channel_claims_its_own_copy_once(timed: Ledger) -> None:
    pids = [await reserved(timed) for _ in range(3)]

    telegram = await claim_channel(timed, "telegram")
    assert [d.event.payout_id for d in telegram] == pids  # oldest first
    assert await claim_channel(timed, "telegram") == []  # leased
    analytics = await claim_channel(timed, "analytics", limit=2)  # the other channel is not held up
    assert [d.event.payout_id for d in analytics] == pids[:2]
    assert {d.channel for d in telegram} == {"telegram"} and all(d.attempts == 0 for d in telegram)

    await timed.outbox.settle(OutboxReport(delivered=telegram))
    backlog = {b.channel: b.pending for b in await timed.outbox.backlog()}
    assert backlog == {"analytics": 3, "telegram": 0}


async def test_a_channel_registered_later_gets_the_events_written_after(timed: Ledger) -> None:
    before = await reserved(timed)
    await timed.outbox.register(["bonus_events"])
    await timed.outbox.register(["bonus_events"])  # every worker registers at start: idempotent
    after = await reserved(timed)

    claimed = await claim_channel(timed, "bonus_events")
    assert [d.event.payout_id for d in claimed] == [after]
    assert before != after


async def test_a_payouts_events_reach_a_channel_in_order(timed: Ledger) -> None:
    pid = await reserved(timed)
    await paid(timed, pid, "B-4")

    first = await claim_channel(timed, "telegram")
    assert [d.event.kind for d in first] == [K.PENDING]  # SUCCESS waits for PENDING
    failure = OutboxFailure(first[0], "telegram: HTTP 503", timedelta(seconds=30))
    await timed.outbox.settle(OutboxReport(failed=[failure]))
    assert await claim_channel(timed, "telegram") == []  # still waits, back-off too

    analytics = await claim_channel(timed, "analytics")
    assert [d.event.kind for d in analytics] == [K.PENDING]


async def test_a_failed_attempt_backs_off_and_is_counted(timed: Ledger, clock: Clock) -> None:
    await reserved(timed)
    [delivery] = await claim_channel(timed, "telegram")
    error = "telegram: HTTP 503 " + "x" * 1000
    await timed.outbox.settle(OutboxReport(failed=[OutboxFailure(delivery, error, timedelta(seconds=30))]))

    clock.advance(29)
    assert await claim_channel(timed, "telegram") == []
    clock.advance(2)
    [again] = await claim_channel(timed, "telegram")
    assert (again.outbox_id, again.attempts) == (delivery.outbox_id, 1)
    await timed.outbox.settle(OutboxReport(delivered=[again]))
    await timed.outbox.settle(OutboxReport(delivered=[again]))  # a repeat report changes nothing
    await timed.outbox.settle(OutboxReport(failed=[OutboxFailure(again, "late", timedelta(0))]))  # nor a late one
    clock.advance(3600)
    assert await claim_channel(timed, "telegram") == []


async def test_a_lease_that_runs_out_is_claimed_again_and_a_release_is_due_at_once(
    timed: Ledger, clock: Clock
) -> None:
    pids = [await reserved(timed) for _ in range(2)]
    claimed = await claim_channel(timed, "telegram")

    # The relay stopped before trying the second.
    await timed.outbox.settle(OutboxReport(released=[OutboxRelease(d) for d in claimed[1:]]))
    assert [d.event.payout_id for d in await claim_channel(timed, "telegram")] == pids[1:]
    clock.advance(LEASE.total_seconds() + 1)  # the relay that claimed the first one died
    again = await claim_channel(timed, "telegram")
    assert [(d.event.payout_id, d.attempts) for d in again] == [(pids[0], 0), (pids[1], 0)]


async def test_the_backlog_says_how_many_and_since_when(timed: Ledger, clock: Clock) -> None:
    assert {(b.channel, b.pending, b.oldest_at) for b in await timed.outbox.backlog()} == {
        ("analytics", 0, None),
        ("telegram", 0, None),
    }
    first_at = clock.now
    await reserved(timed)
    clock.advance(10)
    await reserved(timed)
    await timed.outbox.settle(OutboxReport(delivered=await claim_channel(timed, "analytics")))

    backlog = {b.channel: b for b in await timed.outbox.backlog()}
    assert (backlog["telegram"].pending, backlog["telegram"].oldest_at) == (2, first_at)
    assert (backlog["analytics"].pending, backlog["analytics"].oldest_at) == (0, None)


async def test_prune_keeps_what_a_channel_still_owes(timed: Ledger, clock: Clock) -> None:
    done = await reserved(timed)
    owed = await reserved(timed)
    for channel in ("telegram", "analytics"):
        claimed = await claim_channel(timed, channel)
        delivered = [d for d in claimed if d.event.payout_id == done or channel == "analytics"]
        await timed.outbox.settle(OutboxReport(delivered=delivered))
    clock.advance(10)

    assert await timed.outbox.prune(older_than=clock.now) == 1
    assert await timed.outbox.events(done) == []
    assert [e.payout_id for e in await timed.outbox.events(owed)] == [owed]
    assert {b.channel: b.pending for b in await timed.outbox.backlog()} == {"analytics": 0, "telegram": 1}


async def message_of(ledger: Ledger, pid: str) -> int | None:
    row = await ledger.payouts.get(pid)
    assert row is not None
    return row.telegram_message_id


async def test_the_user_message_id_is_kept_with_the_payout(timed: Ledger, clock: Clock) -> None:
    pids = [await reserved(timed) for _ in range(4)]
    [first] = await claim_channel(timed, "telegram", limit=1)
    assert first.telegram_message_id is None
    await timed.outbox.settle(OutboxReport(user_messages={pids[0]: 41}))

    # The claim notes the first messages its batches may send (maybe sent), only where no message is
    # recorded: every channel's batch is claimed before it asks.
    asked: list[dict[str, list[str]]] = []

    def first_messages(batches: Mapping[str, Sequence[OutboxDelivery]]) -> set[str]:
        asked.append({channel: [d.event.payout_id for d in batch] for channel, batch in batches.items()})
        return set(pids)

    claim = await timed.outbox.claim(["telegram", "analytics"], limit=10, lease=LEASE, first_messages=first_messages)
    claimed = claim.batches["telegram"]
    assert [(d.event.payout_id, d.telegram_message_id) for d in claimed] == [(p, None) for p in pids[1:]]
    assert asked == [{"telegram": pids[1:], "analytics": pids}]
    assert claim.noted == set(pids[1:])
    again = await timed.outbox.claim(["telegram"], limit=10, lease=LEASE, first_messages=lambda _: set(pids))
    assert (again.batches, again.noted) == ({"telegram": []}, set())
    assert [await message_of(timed, p) for p in pids] == [41, MESSAGE_MAYBE_SENT, MESSAGE_MAYBE_SENT, 0]

    # After: one sent (its id), one Telegram said it did not send (the note goes), one not reported (the
    # relay died: the note stays); "not sent" for a payout whose message id is known withdraws nothing.
    report = OutboxReport(delivered=claimed, user_messages={pids[1]: 42, pids[2]: None, pids[0]: None})
    await timed.outbox.settle(report)
    assert [await message_of(timed, p) for p in pids] == [41, 42, None, MESSAGE_MAYBE_SENT]
    clock.advance(LEASE.total_seconds() + 1)
    [again_first] = await claim_channel(timed, "analytics", limit=1)
    assert again_first.telegram_message_id == 41


async def test_a_batch_report_records_every_outcome_in_one_transaction(timed: Ledger, clock: Clock) -> None:
    pids = [await reserved(timed) for _ in range(5)]
    claimed = await claim_channel(timed, "telegram")
    commits = 0

    def count(_conn: object) -> None:
        nonlocal commits
        commits += 1

    sa.event.listen(timed.engine.sync_engine, "commit", count)
    try:
        await timed.outbox.settle(
            OutboxReport(
                delivered=claimed[:2],
                failed=[OutboxFailure(claimed[2], "telegram: HTTP 502", timedelta(seconds=20))],
                released=[OutboxRelease(d, timedelta(seconds=10)) for d in claimed[3:]],
                user_messages={pids[0]: 7, pids[1]: 8},
            )
        )
    finally:
        sa.event.remove(timed.engine.sync_engine, "commit", count)

    assert commits == 1
    assert {b.channel: b.pending for b in await timed.outbox.backlog()}["telegram"] == 3
    clock.advance(11)
    assert [(d.event.payout_id, d.attempts) for d in await claim_channel(timed, "telegram")] == [
        (pids[3], 0),
        (pids[4], 0),
    ]
    clock.advance(10)
    [failed] = await claim_channel(timed, "telegram")
    assert (failed.event.payout_id, failed.attempts) == (pids[2], 1)
    async with timed.engine.connect() as conn:
        error = await conn.scalar(
            sa.select(outbox_deliveries.c.last_error).where(
                outbox_deliveries.c.outbox_id == failed.outbox_id, outbox_deliveries.c.channel == "telegram"
            )
        )
    assert error == "telegram: HTTP 502"
    assert [await message_of(timed, p) for p in pids[:2]] == [7, 8]
