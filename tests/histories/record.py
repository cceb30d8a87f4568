"""Record the committed histories that tests/test_replay.py replays.

    .venv/bin/python -m tests.histories.record

Run it when a workflow change is meant to change histories (and say so in the commit); replay
tests then prove that the running code still replays what production has.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import timedelta
from pathlib import Path

from payouts.settings import PayoutSettings
from payouts.status import PayoutStatus
from tests.stack import Stack, running_stack
from tests.temporal_envs import dev_server

HERE = Path(__file__).parent


async def record(stack: Stack, name: str, faults: dict[str, object], until: set[PayoutStatus]) -> None:
    await stack.http.post(f"{stack.sandbox_url}/_sandbox/reset")
    if faults:
        await stack.faults(faults)
    handle = await stack.submit()
    await stack.wait_status(handle, until, timeout=60)
    await asyncio.sleep(1)  # let background notifications finish, so the history is complete
    history = await handle.fetch_history()
    (HERE / f"{name}.json").write_text(history.to_json())
    print(f"recorded {name}: {len(history.events)} events")


async def main() -> None:
    async with dev_server() as env:
        with tempfile.TemporaryDirectory() as tmp:
            policy = PayoutSettings(callback_timeout_seconds=2, retry_backoff_seconds=1, max_bill_rounds=2)
            async with running_stack(env.client, Path(tmp), telecom=True, payout=policy) as stack:
                await record(stack, "happy_path", {}, {PayoutStatus.PAID})
                await record(stack, "manual_review", {"drop_callback": True}, {PayoutStatus.MANUAL_REVIEW})
                await asyncio.sleep(timedelta(seconds=1).total_seconds())


if __name__ == "__main__":
    asyncio.run(main())
