from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from ledger import Ledger, head_revision, upgrade
from ledger.engine import make_engine
from ledger.schema import metadata


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
