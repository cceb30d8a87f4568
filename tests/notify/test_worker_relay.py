"""`payouts worker` runs the outbox relay beside its workers and stops it with them on SIGTERM."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.cli_helpers import payouts_process, stop_cleanly
from tests.ledger.helpers import make_req
from tests.notify.test_relay import eventually, user_message
from tests.stack import running_stack, settings_env

pytestmark = pytest.mark.integration


async def test_the_worker_process_delivers_payout_events_until_it_is_stopped(
    dev_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    async with running_stack(dev_env.client, tmp_path, workers=False, relay=False) as stack:
        env = {**os.environ, **settings_env(stack.settings), "OUTBOX_RELAY_INTERVAL_SECONDS": "0.1"}
        log = tmp_path / "worker.log"
        with payouts_process("worker", env=env, log=log) as worker:

            async def registered() -> bool:
                return {b.channel for b in await stack.ledger.outbox.backlog()} == {"analytics", "telegram"}

            await eventually(registered, timeout=30)
            req = make_req()
            await stack.ledger.payouts.reserve(req)  # what the reservation activity does: the PENDING event is written

            async def told() -> bool:
                return await user_message(stack.ledger, req.payout_id) is not None

            await eventually(told, timeout=30)
            await stop_cleanly(worker, log)

        [sent] = [c for c in await stack.record("telegram") if c.get("chat_id") == req.telegram_id]
        message_id = await user_message(stack.ledger, req.payout_id)
        assert (sent["method"], sent["message_id"]) == ("sendMessage", message_id)
        assert all(b.pending == 0 for b in await stack.ledger.outbox.backlog())
        assert "outbox relay delivering to analytics, telegram" in log.read_text()
