"""What a happy-path payout asks of the ledger: one transaction per step of the story (reserve; begin the
attempt; its answer, archive and route; the callback stored; PAID with the callback processed), and the
webhook's mark that the workflow was told. Counted at the ledger's engine, through the public doors
(HTTP intake, the sandbox's callback to the webhook, the workflow), with the relay off: its cost is
shared by the payouts of a batch (bench.e2e prints the whole, relay included, per payout)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event
from temporalio.testing import WorkflowEnvironment

from payouts.status import PayoutStatus as S
from tests.stack import Stack, running_stack

# reserve, attempt begun, its ending (answer + archive + route), callback stored, the callback's mark
# (batched with others under load), PAID with the callback processed
STEPS = 6


@pytest.fixture
async def quiet_stack(dev_env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    # The relay off, and the webhook's redelivery sweep (a poll, not a payout's cost) out of the way.
    async with running_stack(dev_env.client, tmp_path, relay=False, redeliver_interval=3600) as stack:
        yield stack


async def test_a_happy_payout_costs_one_ledger_transaction_per_step(quiet_stack: Stack) -> None:
    stack = quiet_stack
    commits: list[int] = []

    def committed(_conn: Any) -> None:
        commits.append(1)

    engine = stack.ledger.engine.sync_engine
    event.listen(engine, "commit", committed)
    try:
        handle = await stack.submit()
        view = await stack.wait_status(handle, {S.PAID, S.MANUAL_REVIEW})
        await handle.result()
        await asyncio.sleep(1.0)  # the webhook's batched mark
    finally:
        event.remove(engine, "commit", committed)

    assert view.status == S.PAID
    assert len(commits) <= STEPS, f"{len(commits)} ledger transactions for one payout (at most {STEPS})"
    stored = await stack.ledger.callbacks.for_payout(handle.id)
    assert [cb.processed_at is not None and cb.signalled_at is not None for cb in stored] == [True]
    assert len(await stack.ledger.archive.for_payout(handle.id)) == 1
