"""Ledger fixtures: every `ledger` test runs on SQLite (temp file) and on PostgreSQL (throwaway database).

PostgreSQL: `PAYOUTS_TEST_POSTGRES_URL` (default the local server's `test` database, trust auth) is used
only to CREATE a fresh `payouts_test_<random>` database for the session and DROP it at the end. An
unreachable server fails the postgres tests with a clear message; set PAYOUTS_SKIP_POSTGRES=1 to skip.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from ledger import Ledger, upgrade
from ledger.schema import metadata
from tests.ledger.helpers import PG_ADMIN_URL, PgAdmin


@pytest.fixture(scope="session")
async def pg_admin() -> AsyncIterator[PgAdmin]:
    if os.environ.get("PAYOUTS_SKIP_POSTGRES") == "1":
        pytest.skip("PAYOUTS_SKIP_POSTGRES=1")
    engine = create_async_engine(
        PG_ADMIN_URL, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"timeout": 5}
    )
    try:
        async with engine.connect() as conn:
            await conn.execute(sa.text("SELECT 1"))
    except (OSError, TimeoutError, sa.exc.SQLAlchemyError) as exc:
        await engine.dispose()
        pytest.fail(
            f"PostgreSQL is not reachable at {make_url(PG_ADMIN_URL)!r} ({type(exc).__name__}: {exc}). "
            "Start it (check with `pg_isready -h 127.0.0.1`), point PAYOUTS_TEST_POSTGRES_URL at one, "
            "or set PAYOUTS_SKIP_POSTGRES=1 to skip the postgres tests explicitly.",
            pytrace=False,
        )
    admin = PgAdmin(engine)
    try:
        yield admin
    finally:
        await admin.drop_all()
        await engine.dispose()


@pytest.fixture(scope="session")
async def pg_url(pg_admin: PgAdmin) -> str:
    """A fresh database for the session, migrated to head."""
    url = await pg_admin.create_database()
    await asyncio.to_thread(upgrade, url)
    return url


@pytest.fixture(scope="session")
async def sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    url = f"sqlite+aiosqlite:///{tmp_path_factory.mktemp('ledger') / 'sub' / 'ledger.db'}"
    await asyncio.to_thread(upgrade, url)
    return url


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    return str(request.getfixturevalue("pg_url" if request.param == "postgres" else "sqlite_url"))


async def clear(ledger: Ledger) -> None:
    async with ledger.engine.begin() as conn:
        for table in reversed(metadata.sorted_tables):
            await conn.execute(sa.delete(table))


@pytest.fixture
async def ledger(db_url: str) -> AsyncIterator[Ledger]:
    led = Ledger.from_url(db_url)
    await clear(led)
    try:
        yield led
    finally:
        await led.aclose()
