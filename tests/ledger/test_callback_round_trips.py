"""What storing a callback costs the ledger, and the route it still never misses (ledger.callbacks.store)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy import event

from ledger import Ledger
from ledger.callbacks import route_lock, route_stored_callbacks
from ledger.db import Db
from ledger.schema import bill_routes, callbacks, payouts
from tests.ledger.helpers import reserved, store_callback


def _pg(ledger: Ledger) -> bool:
    return ledger.engine.dialect.name == "postgresql"


class Meter:
    def __init__(self) -> None:
        self.commits = 0
        self.statements: list[str] = []


@contextmanager
def metered(ledger: Ledger) -> Iterator[Meter]:
    """Counts the ledger's commits and the statements it sends (BEGIN and COMMIT are not statements here)."""
    meter = Meter()
    engine = ledger.engine.sync_engine

    def on_commit(_conn: Any) -> None:
        meter.commits += 1

    def on_statement(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if statement.split(None, 1)[0].upper() not in ("BEGIN", "COMMIT", "PRAGMA"):
            meter.statements.append(statement)

    event.listen(engine, "commit", on_commit)
    event.listen(engine, "before_cursor_execute", on_statement)
    try:
        yield meter
    finally:
        event.remove(engine, "commit", on_commit)
        event.remove(engine, "before_cursor_execute", on_statement)


async def test_a_callback_for_a_known_bill_is_one_statement_in_one_transaction(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    attempt = await ledger.attempts.begin(pid, 1)
    answered = await ledger.attempts.finish(attempt.id, "answered", bill_id="B-1")
    await ledger.callbacks.set_bill_id(pid, "B-1")

    with metered(ledger) as meter:
        stored = await store_callback(ledger, "B-1", "<rsp>B-1 paid</rsp>")
    assert (stored.inserted, stored.payout_id, stored.callback.payout_id) == (True, pid, pid)
    assert stored.callback.routed_at == stored.callback.received_at
    assert stored.bill_answered_at == answered.finished_at
    assert (meter.commits, len(meter.statements)) == (1, 1)

    with metered(ledger) as meter:
        repeat = await store_callback(ledger, "B-1", "<rsp>B-1 paid</rsp>")
    assert (repeat.inserted, repeat.callback.id, repeat.payout_id, repeat.bill_answered_at) == (
        False, stored.callback.id, pid, None,
    )  # fmt: skip
    # PostgreSQL finds the stored copy in the same statement; SQLite reads it with a second one
    assert (meter.commits, len(meter.statements)) == (1, 1 if _pg(ledger) else 2)


async def test_a_callback_for_an_unknown_bill_is_one_statement_and_its_route_routes_it_later(ledger: Ledger) -> None:
    with metered(ledger) as meter:
        stored = await store_callback(ledger, "B-nobody", "<rsp>?</rsp>")
    assert (stored.inserted, stored.payout_id, stored.callback.routed_at) == (True, None, None)
    assert (meter.commits, len(meter.statements)) == (1, 1)  # no second look: the route row decided it
    assert [c.id for c in await ledger.callbacks.unrouted()] == [stored.callback.id]

    with metered(ledger) as meter:
        repeat = await store_callback(ledger, "B-nobody", "<rsp>?</rsp>")
    assert (repeat.inserted, repeat.callback.id, repeat.payout_id) == (False, stored.callback.id, None)
    assert meter.commits == 2  # an unrouted repeat looks again

    pid = await reserved(ledger)
    early = await ledger.callbacks.set_bill_id(pid, "B-nobody")  # the route, learnt later
    assert [c.id for c in early] == [stored.callback.id]
    assert await ledger.callbacks.unrouted() == []


async def test_a_repeat_routes_a_callback_left_unrouted_beside_its_route(ledger: Ledger) -> None:
    """A callback left unrouted though its route is there (stored before the route row existed, as an
    earlier version stored it): Portmone's retry routes it."""
    stored = await store_callback(ledger, "B-2", "<rsp>B-2 paid</rsp>")
    pid = await reserved(ledger)
    async with ledger.engine.begin() as conn:  # the route, written without routing stored callbacks
        await conn.execute(sa.delete(bill_routes).where(bill_routes.c.bill_id == "B-2"))
        await conn.execute(sa.insert(bill_routes).values(bill_id="B-2", payout_id=pid))

    repeat = await store_callback(ledger, "B-2", "<rsp>B-2 paid</rsp>")
    assert (repeat.inserted, repeat.callback.id, repeat.payout_id, repeat.callback.payout_id) == (
        False, stored.callback.id, pid, pid,
    )  # fmt: skip
    assert repeat.callback.routed_at is not None
    assert await ledger.callbacks.unrouted() == []


async def test_many_signalled_marks_are_one_statement(ledger: Ledger) -> None:
    pid = await reserved(ledger)
    await ledger.callbacks.set_bill_id(pid, "B-3")
    ids = [(await store_callback(ledger, "B-3", f"<rsp>B-3 notice {i}</rsp>")).callback.id for i in range(7)]
    await ledger.callbacks.mark_signalled(ids[0])
    first = (await ledger.callbacks.for_payout(pid))[0].signalled_at
    assert first is not None

    with metered(ledger) as meter:
        await ledger.callbacks.mark_signalled(*ids, ids[3])
        await ledger.callbacks.mark_signalled()
    assert (meter.commits, len(meter.statements)) == (1, 1)
    marked = await ledger.callbacks.for_payout(pid)
    assert all(c.signalled_at is not None for c in marked)
    assert marked[0].signalled_at == first  # a mark already there stays as it was


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)  # SQLite serializes writers: no such race
@pytest.mark.parametrize("first", ["route", "callback"])
async def test_a_callback_stored_while_its_route_is_being_written_ends_routed(ledger: Ledger, first: str) -> None:
    """The route writer and the callback's one statement overlap, the writer's transaction held open.
    `route`: the writer has taken the bill's route row and written the route, uncommitted, when the
    callback's statement runs: the statement waits for the row, then reads the writer's route.
    `callback`: the callback's statement has taken the row first (held open here by a transaction that
    stores it the same way): the writer waits for it, and its `route_stored_callbacks` then sees it."""
    assert _pg(ledger)
    pid = await reserved(ledger)
    writer = Db(ledger.engine)
    route_written = asyncio.Event()
    release = asyncio.Event()

    async def record_route() -> None:  # what set_bill_id and attempts.finish do, held open in between
        async with writer.write() as conn:
            await route_lock(writer, conn, "B-race", pid)
            await conn.execute(sa.update(payouts).where(payouts.c.id == pid).values(bill_id="B-race"))
            await route_stored_callbacks(writer, conn, "B-race", pid)
            route_written.set()
            await release.wait()

    if first == "route":
        route = asyncio.create_task(record_route())
        try:
            await route_written.wait()
            store = asyncio.create_task(store_callback(ledger, "B-race", "<rsp>B-race paid</rsp>"))
            await _until_a_row_lock_is_awaited(ledger)
            assert await ledger.callbacks.unrouted() == []  # not stored yet: waiting for the route row
        finally:
            release.set()
            await route
        stored = await store
        assert (stored.inserted, stored.payout_id, stored.callback.payout_id) == (True, pid, pid)
    else:
        release.set()
        async with ledger.engine.begin() as conn:  # the callback's statement, its commit held back
            await route_lock(writer, conn, "B-race")
            await conn.execute(sa.insert(callbacks).values(
                dedupe_key="race-1", bill_id="B-race", raw_body="<rsp/>", received_at=writer.now(), verdict="paid",
            ))  # fmt: skip
            route = asyncio.create_task(record_route())
            await _until_a_row_lock_is_awaited(ledger)
            assert not route_written.is_set()
        await route

    assert await ledger.callbacks.unrouted() == []
    assert [c.payout_id for c in await ledger.callbacks.for_payout(pid)] == [pid]


async def _until_a_row_lock_is_awaited(ledger: Ledger) -> None:
    waiting = sa.text(
        "SELECT count(*) FROM pg_locks WHERE locktype = 'transactionid' AND NOT granted"
    )
    async with asyncio.timeout(10):
        while True:
            async with ledger.engine.connect() as conn:
                if await conn.scalar(waiting):
                    return
            await asyncio.sleep(0.01)
