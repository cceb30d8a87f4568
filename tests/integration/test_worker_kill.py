"""kill -9 of the worker while `create_bill` is in flight never yields a second bill: the restarted
worker finds the attempt with no ending and never re-sends. When Portmone's callback comes, it finds
the payout by its echo and settles it; when it is lost, the payout waits for a person."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from payouts.status import PayoutStatus as S
from tests.integration.conftest import short_policy
from tests.stack import Stack, running_stack, settings_env

SETTLED = {S.PAID, S.MANUAL_REVIEW, S.REJECTED, S.CANCELLED, S.FAILED}


def start_worker(stack: Stack, log: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, **settings_env(stack.settings)}
    return subprocess.Popen(
        [sys.executable, "-m", "console.cli", "worker"], env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


async def wait_until(check, timeout: float = 30) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while loop.time() < deadline:
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError("condition not met in time")


@pytest.mark.parametrize("moment", ["before_portmone_answers", "after_portmone_committed"])
async def test_sigkill_during_create_bill(dev_env: WorkflowEnvironment, tmp_path: Path, moment: str) -> None:
    # The attempt timeout (17 s) is above the client's budget (connect 2 + write 2 + read 2) plus the
    # 10 s ledger margin; the killed attempt is found unfinished once it has passed.
    async with running_stack(
        dev_env.client, tmp_path, workers=False, read_timeout=2.0,
        payout=short_policy(bill_attempt_timeout_seconds=17),
    ) as stack:
        if moment == "after_portmone_committed":
            await stack.faults({"commit_then_hang": {"probability": 1.0, "times": 1}, "drop_callback": True})
        else:
            await stack.faults({"latency_ms": {"probability": 1.0, "times": 1, "ms": 2000}})
        log = tmp_path / "worker.log"
        worker = start_worker(stack, log)
        restarted: subprocess.Popen[bytes] | None = None
        try:
            handle = await stack.submit()

            async def request_in_flight() -> bool:
                attempts = await stack.ledger.attempts.for_payout(handle.id)
                # The sandbox holds the request (latency fault) before it has read or answered it.
                return bool(attempts) and attempts[0].state == "prepared" and len(await stack.record("requests")) == 1

            async def bill_committed() -> bool:
                return len(await stack.record("bills")) == 1

            await wait_until(bill_committed if moment == "after_portmone_committed" else request_in_flight)
            worker.send_signal(signal.SIGKILL)
            worker.wait(10)

            restarted = start_worker(stack, log)
            view = await stack.wait_status(handle, SETTLED, timeout=90)
        finally:
            for proc in (worker, restarted):
                if proc is not None and proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
                    proc.wait(30)

        assert len(await stack.record("requests")) == 1, "bills.create was sent again"
        [bill] = await stack.record("bills")
        attempts = await stack.ledger.attempts.for_payout(handle.id)
        assert [a.state for a in attempts] == ["unknown"]
        assert "no recorded ending" in (attempts[0].detail or "")
        if moment == "after_portmone_committed":  # the callback was lost: a person decides
            assert view.status == S.MANUAL_REVIEW, view
            assert view.escalation_reason == "outcome_unknown"
            assert view.open_bills and "attempt 1" in view.open_bills[0]
        else:  # Portmone's callback named a bill id we never learnt: routed by its echo, paid once
            assert view.status == S.PAID, view
            assert attempts[0].bill_id == bill["bill_id"]
