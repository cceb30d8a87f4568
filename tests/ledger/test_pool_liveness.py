"""The PostgreSQL pool never hands a ledger operation a connection the server closed, and pays for a
round trip only on connections idle long enough to have been dropped silently (ledger/engine.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql.asyncpg import AsyncAdapt_asyncpg_connection

from ledger import Ledger, engine
from tests.ledger.helpers import PgAdmin, make_req, reserved

pytestmark = pytest.mark.postgres


@pytest.fixture
async def pg_ledger(pg_url: str) -> AsyncIterator[Ledger]:
    ledger = Ledger.from_url(pg_url)
    try:
        yield ledger
    finally:
        await ledger.aclose()


async def ledger_backends(admin: PgAdmin, url: str) -> set[int]:
    """The server processes serving the ledger's pooled connections to the database of `url`."""
    database = sa.engine.make_url(url).database
    async with admin.engine.connect() as conn:
        rows = await conn.execute(
            sa.text("SELECT pid FROM pg_stat_activity WHERE datname = :db AND application_name = 'payouts-ledger'"),
            {"db": database},
        )
        return {row.pid for row in rows}


async def test_a_connection_the_server_closed_is_replaced_before_an_operation_uses_it(
    pg_ledger: Ledger, pg_admin: PgAdmin, pg_url: str
) -> None:
    payout_id = await reserved(pg_ledger)
    status = (await pg_ledger.payouts.get(payout_id)).status
    before = await ledger_backends(pg_admin, pg_url)
    assert before  # the pool keeps the connection the reservation used
    async with pg_admin.engine.connect() as conn:  # as a server restart or an idle timeout would
        for pid in before:
            await conn.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    await asyncio.sleep(0.2)

    # No LedgerUnavailable: the pool noticed the closed socket at checkout and opened a new connection.
    assert (await pg_ledger.payouts.get(payout_id)).status == status
    assert (await ledger_backends(pg_admin, pg_url)).isdisjoint(before)


async def test_only_a_connection_idle_past_the_threshold_is_pinged(
    pg_ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    pings: list[int] = []
    real_ping = AsyncAdapt_asyncpg_connection.ping

    def counted(self: AsyncAdapt_asyncpg_connection) -> None:
        pings.append(1)
        real_ping(self)

    monkeypatch.setattr(AsyncAdapt_asyncpg_connection, "ping", counted)
    monkeypatch.setattr(engine, "PG_PING_AFTER_IDLE_S", 0.3)
    await pg_ledger.payouts.reserve(make_req())
    for _ in range(5):  # back to back: the connection was just used
        await pg_ledger.ping()
    assert pings == []

    await asyncio.sleep(0.4)
    await pg_ledger.ping()
    assert pings == [1]
