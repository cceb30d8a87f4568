"""Ledger fixtures: every `ledger` test runs on SQLite (temp file) and on PostgreSQL (throwaway database).

PostgreSQL: a fresh `payouts_test_<random>` database for the session, made by the `pg_admin` fixture
of tests/conftest.py.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from ledger import Ledger, upgrade
from ledger.schema import metadata
from tests.ledger.helpers import PgAdmin


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
