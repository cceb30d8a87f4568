from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from ledger import Ledger, LedgerError, LedgerUnavailable, db, upgrade
from ledger.engine import PG_LOCK_TIMEOUT_MS
from ledger.schema import payouts
from tests.ledger.helpers import PgAdmin, make_req, reserved


@pytest.mark.parametrize(
    "url",
    [
        "postgresql+asyncpg://postgres@127.0.0.1:1/nothing_listens_here",
        "postgresql+asyncpg://postgres@127.0.0.1:5432/payouts_no_such_database",
    ],
)
async def test_unreachable_postgres_raises_ledger_unavailable(url: str) -> None:
    ledger = Ledger.from_url(url)
    try:
        with pytest.raises(LedgerUnavailable):
            await ledger.ping()
        with pytest.raises(LedgerUnavailable) as info:
            await ledger.payouts.reserve(make_req())
        assert isinstance(info.value, LedgerError)
        assert "ledger database unavailable" in str(info.value)
    finally:
        await ledger.aclose()


async def test_unopenable_sqlite_file_raises_ledger_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the directory should be")
    ledger = Ledger.from_url(f"sqlite+aiosqlite:///{blocker / 'ledger.db'}")
    try:
        with pytest.raises(LedgerUnavailable):
            await ledger.ping()
        with pytest.raises(LedgerUnavailable):
            await ledger.payouts.get("payout-R1")
    finally:
        await ledger.aclose()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def test_unmigrated_database_is_unavailable_not_a_crash(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    if backend == "postgres":
        admin: PgAdmin = request.getfixturevalue("pg_admin")
        url = await admin.create_database()
    else:
        url = f"sqlite+aiosqlite:///{tmp_path / 'empty.db'}"
    ledger = Ledger.from_url(url)
    try:
        await ledger.ping()
        with pytest.raises(LedgerUnavailable, match="payouts"):
            await ledger.payouts.get("payout-R1")
    finally:
        await ledger.aclose()


@pytest.mark.postgres
async def test_a_write_waiting_on_a_locked_row_gives_up_before_the_activity_does(pg_url: str) -> None:
    """A lock wait longer than the activity's start-to-close would let a timed-out attempt and its retry
    both proceed; the lock timeout (ledger.engine.PG_LOCK_TIMEOUT_MS) makes the waiter give up first."""
    ledger = Ledger.from_url(pg_url)
    holder = create_async_engine(pg_url, poolclass=NullPool)
    try:
        pid = await reserved(ledger)
        async with holder.connect() as conn, conn.begin():
            await conn.execute(sa.select(payouts.c.id).where(payouts.c.id == pid).with_for_update())
            started = time.monotonic()
            with pytest.raises(LedgerUnavailable):
                await ledger.attempts.begin(pid, 1)
            waited = time.monotonic() - started
        assert PG_LOCK_TIMEOUT_MS / 1000 - 0.5 < waited < 20  # gave up at the lock timeout, under 30 s
        assert (await ledger.attempts.begin(pid, 1)).attempt_no == 1  # and works once the lock is gone
    finally:
        await holder.dispose()
        await ledger.aclose()


async def test_sqlite_writers_queue_only_so_long(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(db, "SQLITE_QUEUE_WAIT_SECONDS", 0.3)
    url = f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    await asyncio.to_thread(upgrade, url)
    ledger = Ledger.from_url(url)
    try:
        pid = await reserved(ledger)
        release = asyncio.Event()

        async def hold_the_writer() -> None:
            async with ledger._db.write():
                await release.wait()

        holding = asyncio.create_task(hold_the_writer())
        await asyncio.sleep(0.05)
        with pytest.raises(LedgerUnavailable, match="ledger busy"):
            await ledger.attempts.begin(pid, 1)
        release.set()
        await holding
        assert (await ledger.attempts.begin(pid, 1)).attempt_no == 1
    finally:
        await ledger.aclose()
