"""Several relays claiming from one PostgreSQL outbox at once (`FOR UPDATE SKIP LOCKED`): no event goes to
two of them, and a claimer never waits for another's locked rows."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
import sqlalchemy as sa

from ledger import Ledger
from ledger.schema import outbox_deliveries
from tests.ledger.conftest import clear
from tests.ledger.helpers import claim_channel, reserved

pytestmark = pytest.mark.postgres


@pytest.fixture
async def relays(pg_url: str) -> AsyncIterator[tuple[Ledger, Ledger]]:
    """Two ledgers with their own connection pools: two worker processes."""
    first, second = Ledger.from_url(pg_url), Ledger.from_url(pg_url)
    await clear(first)
    await first.outbox.register(["telegram"])
    try:
        yield first, second
    finally:
        await first.aclose()
        await second.aclose()


async def test_two_concurrent_claimers_get_disjoint_events(relays: tuple[Ledger, Ledger]) -> None:
    first, second = relays
    pids = [await reserved(first) for _ in range(60)]

    got: list[list[str]] = [[], []]
    for _ in range(10):
        rounds = await asyncio.gather(
            claim_channel(first, "telegram", limit=7),
            claim_channel(second, "telegram", limit=7),
            claim_channel(first, "telegram", limit=7),
            claim_channel(second, "telegram", limit=7),
        )
        for i, claimed in enumerate(rounds):
            got[i % 2].extend(d.event.payout_id for d in claimed)

    assert not set(got[0]) & set(got[1])
    assert sorted(got[0] + got[1]) == sorted(pids)  # every event once, none twice
    assert got[0] and got[1]


async def test_a_claimer_skips_rows_another_holds_instead_of_waiting(relays: tuple[Ledger, Ledger]) -> None:
    first, second = relays
    pids = [await reserved(first) for _ in range(4)]
    async with first.engine.connect() as conn, conn.begin():
        # Another relay is in the middle of claiming the first two (its transaction holds their rows).
        held = await conn.execute(
            sa.select(outbox_deliveries.c.payout_id)
            .where(outbox_deliveries.c.payout_id.in_(pids[:2]))
            .with_for_update()
        )
        assert len(held.all()) == 2
        async with asyncio.timeout(3):  # well under the ledger's 5 s lock timeout: no waiting
            claimed = await claim_channel(second, "telegram")
    assert [d.event.payout_id for d in claimed] == pids[2:]
