from __future__ import annotations

import asyncio
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import AsyncConnection

from ledger import Ledger, head_revision, upgrade
from ledger.engine import make_engine
from ledger.migrate import alembic_config
from ledger.schema import metadata
from payouts.status import PayoutStatus
from tests.ledger.helpers import PgAdmin, store_callback


async def _version(url: str) -> list[str]:
    engine = make_engine(url, null_pool=True)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(sa.text("SELECT version_num FROM alembic_version"))).scalars())
    finally:
        await engine.dispose()


async def test_fresh_sqlite_file_migrates_twice_to_head(tmp_path: Path) -> None:
    db = tmp_path / "deep" / "dir" / "ledger.db"
    url = f"sqlite+aiosqlite:///{db}"
    await asyncio.to_thread(upgrade, url)
    assert db.is_file()  # the parent directories were created
    upgrade(url)  # called on the running loop's thread: runs in a helper thread
    assert await _version(url) == [head_revision()]
    ledger = Ledger.from_url(url)
    try:
        await ledger.ping()
        async with ledger.engine.connect() as conn:
            mode = (await conn.execute(sa.text("PRAGMA journal_mode"))).scalar_one()
            fks = (await conn.execute(sa.text("PRAGMA foreign_keys"))).scalar_one()
        assert (mode, fks) == ("wal", 1)
    finally:
        await ledger.aclose()


async def test_upgrade_again_is_a_noop_at_head(db_url: str) -> None:
    await asyncio.to_thread(upgrade, db_url)
    await asyncio.to_thread(upgrade, db_url)
    assert await _version(db_url) == [head_revision()]


async def test_migrated_schema_matches_the_metadata(db_url: str) -> None:
    engine = make_engine(db_url, null_pool=True)
    try:
        async with engine.connect() as conn:
            diff = await conn.run_sync(
                lambda sync: compare_metadata(MigrationContext.configure(sync, opts={"compare_type": True}), metadata)
            )
    finally:
        await engine.dispose()
    assert diff == []


def _migrate(url: str, direction: str, revision: str) -> None:
    getattr(command, direction)(alembic_config(url), revision)


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database with no tables yet."""
    if request.param == "sqlite":
        return f"sqlite+aiosqlite:///{tmp_path / 'ledger.db'}"
    admin: PgAdmin = request.getfixturevalue("pg_admin")
    return await admin.create_database()


async def _old_payout(conn: AsyncConnection, bill_id: str | None = None) -> datetime:
    """A payout awaiting its callback, written as an earlier revision's ledger held it; returns its time."""
    now = datetime.now(UTC)
    if conn.dialect.name == "sqlite":
        now = now.replace(tzinfo=None)
    await conn.execute(
        sa.text(
            "INSERT INTO payouts (id, receipt_id, user_key, masked_msisdn, telegram_id, amount_kopecks,"
            " currency, status, owner, business_day, created_at, updated_at, bill_id)"
            " VALUES ('payout-old', 'old', :key, '+380•••••67', 1, 2500, 'UAH', 'AWAITING_CALLBACK',"
            " 'payout-old', :day, :now, :now, :bill)"
        ),
        {"key": "e" * 64, "now": now, "day": date(2025, 11, 27), "bill": bill_id},
    )
    return now


async def test_0003_adds_the_outbox_to_a_ledger_in_use_and_goes_back(empty_url: str) -> None:
    url = empty_url
    await asyncio.to_thread(_migrate, url, "upgrade", "0002_new_bill_rule")
    engine = make_engine(url, null_pool=True)
    try:
        async with engine.begin() as conn:
            await _old_payout(conn)
        await asyncio.to_thread(upgrade, url)

        ledger = Ledger.from_url(url)
        try:
            old = await ledger.payouts.get("payout-old")
            assert old is not None and (old.language, old.telegram_message_id) == ("uk", None)
            await ledger.outbox.register(["telegram"])
            await ledger.payouts.transition("payout-old", PayoutStatus.PAID)  # a payout from before reports its end
            assert [e.kind.value for e in await ledger.outbox.events("payout-old")] == ["payout_success"]
        finally:
            await ledger.aclose()

        await asyncio.to_thread(_migrate, url, "downgrade", "0002_new_bill_rule")
        assert await _version(url) == ["0002_new_bill_rule"]
        with pytest.raises(sa.exc.DBAPIError, match="illegal transition"):  # the status guard survived
            async with engine.begin() as conn:
                await conn.execute(sa.text("UPDATE payouts SET status = 'RESERVED' WHERE id = 'payout-old'"))
        await asyncio.to_thread(upgrade, url)
        assert await _version(url) == [head_revision()]
    finally:
        await engine.dispose()


async def test_0006_and_0007_route_the_bills_a_ledger_in_use_holds_and_record_later_changes(empty_url: str) -> None:
    """The routes come from the attempt log (the earliest attempt holding a bill owns it) and from callbacks
    still waiting for theirs; from 0007 on, the database writes the history of a status change."""
    url = empty_url
    await asyncio.to_thread(_migrate, url, "upgrade", "0005_confirmed_evidence")
    engine = make_engine(url, null_pool=True)
    try:
        async with engine.begin() as conn:
            now = await _old_payout(conn, bill_id="B-2")
            for attempt_no, bill in ((1, "B-1"), (2, "B-2")):
                await conn.execute(
                    sa.text(
                        "INSERT INTO bill_attempts (payout_id, round_no, attempt_no, state, bill_id, prepared_at)"
                        " VALUES ('payout-old', :no, :no, 'answered', :bill, :now)"
                    ),
                    {"no": attempt_no, "bill": bill, "now": now},
                )
            await conn.execute(
                sa.text(
                    "INSERT INTO callbacks (dedupe_key, bill_id, raw_body, received_at)"
                    " VALUES ('k-1', 'B-unknown', '<rsp/>', :now)"
                ),
                {"now": now},
            )
        await asyncio.to_thread(upgrade, url)

        ledger = Ledger.from_url(url)
        try:
            async with ledger.engine.connect() as conn:
                routes = dict((await conn.execute(sa.text("SELECT bill_id, payout_id FROM bill_routes"))).all())
            assert routes == {"B-1": "payout-old", "B-2": "payout-old", "B-unknown": None}
            repeat = await store_callback(ledger, "B-1", "<rsp>B-1 paid</rsp>")
            assert repeat.payout_id == "payout-old"
            await ledger.payouts.transition("payout-old", PayoutStatus.PAID)
            assert [(h.from_status, h.to_status) for h in await ledger.payouts.history("payout-old")] == [
                (PayoutStatus.AWAITING_CALLBACK, PayoutStatus.PAID)
            ]
        finally:
            await ledger.aclose()

        await asyncio.to_thread(_migrate, url, "downgrade", "0005_confirmed_evidence")
        assert await _version(url) == ["0005_confirmed_evidence"]
        await asyncio.to_thread(upgrade, url)
        assert await _version(url) == [head_revision()]
    finally:
        await engine.dispose()
