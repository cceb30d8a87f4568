"""A stateful property test of the actors that need the real server: an engineer's Reset (to the first
workflow task and to the last, at any point), a receipt ageing past the eligibility window while its
payout waits, and operators deciding at any moment (at once, or long after they looked), beside
Portmone's faults, late answers and callbacks, and a telecom API that fails during a late paid callback.

It runs on the Temporal dev server (the Java test server cannot reset), in real seconds with a short
policy, and checks the same promises as the time-skipping machine (tests/promises.py): the money
promises after every step, all of them once the payouts have quieted down.

Budget: `PAYOUTS_RECOVERY_EXAMPLES` (default 3, derandomized so CI is repeatable); a long hunt:

    PAYOUTS_RECOVERY_EXAMPLES=100 .venv/bin/pytest tests/property/test_recovery_state_machine.py -x -p no:cacheprovider
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from temporalio.service import RPCError
from temporalio.testing import WorkflowEnvironment

from payouts.models import payout_workflow_id
from runtime.settings import LedgerSettings, PayoutSettings
from tests.property.common import LoopThread, Players
from tests.stack import Stack, running_stack
from tests.temporal_envs import dev_server

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("PAYOUTS_RECOVERY_EXAMPLES", "3"))
STEPS = int(os.environ.get("PAYOUTS_RECOVERY_STEPS", "10"))
# Real seconds: short enough that time passing is a few steps, long enough for a worker to answer.
POLICY = PayoutSettings(callback_timeout_seconds=4, retry_backoff_seconds=1, max_bill_rounds=2,
                        bill_attempt_timeout_seconds=20, eligibility_days=1)  # fmt: skip
# An aged receipt: eligible when it comes, past the window a few seconds later.
AGES_AFTER = timedelta(seconds=3)

PORTMONE_ANSWERS: dict[str, dict[str, Any]] = {
    "ok": {"fail_codes": None, "commit_then_hang": None},
    "transient_once": {"fail_codes": {"1": {"times": 1}}},
    "permanent": {"fail_codes": {"20": {"times": 1}}},
    "hang_after_commit": {"commit_then_hang": {"times": 1}},
}
CALLBACKS: dict[str, dict[str, Any]] = {
    "paid": {"callback_status": "PAYED", "callback_error_code": None, "drop_callback": None},
    "never_settled": {"callback_status": "CREATED", "callback_error_code": None, "drop_callback": None},
    "declined_transient": {"callback_status": "REJECTED", "callback_error_code": "4", "drop_callback": None},
    "declined_permanent": {"callback_status": "REJECTED", "callback_error_code": "30", "drop_callback": None},
    "dropped": {"drop_callback": {"times": 1}},
    "before_answer": {"callback_before_answer": {"times": 1}},
}
QUIET = {"fail_codes": None, "commit_then_hang": None, "drop_callback": None, "callback_before_answer": None,
         "callback_status": "PAYED", "callback_error_code": None, "telecom_fail": None}  # fmt: skip


class Server:
    """The loop thread and one dev server for the whole hunt (each example has a task queue of its own)."""

    def __init__(self) -> None:
        self.loop = LoopThread()
        self._cm = dev_server()
        self.env: WorkflowEnvironment = self.loop.run(self._cm.__aenter__())

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.loop.run(self._cm.__aexit__(None, None, None))
        self.loop.close()


@pytest.fixture(scope="module")
def server() -> Iterator[Server]:
    s = Server()
    yield s
    s.close()


def machine_for(srv: Server) -> type[RuleBasedStateMachine]:
    run = srv.loop.run

    class PayoutRecovery(RuleBasedStateMachine):
        receipts = Bundle("receipts")

        def __init__(self) -> None:
            super().__init__()
            self.tmp = Path(tempfile.mkdtemp(prefix="payouts-recovery-"))
            self._stack_cm = running_stack(
                srv.env.client, self.tmp, read_timeout=1.0, telecom=True, payout=POLICY,
                ledger_settings=LedgerSettings(url=f"sqlite+aiosqlite:///{self.tmp}/ledger.db", user_daily_limit=100),
            )  # fmt: skip
            self.stack: Stack = run(self._stack_cm.__aenter__())
            self.submitted: list[str] = []
            self.players = Players(self.stack, self.submitted)

        # ---- the world --------------------------------------------------------------------------

        @initialize(target=receipts, answer=st.sampled_from(sorted(PORTMONE_ANSWERS)),
                    callback=st.sampled_from(sorted(CALLBACKS)), aged=st.booleans())  # fmt: skip
        def first_receipt(self, answer: str, callback: str, aged: bool) -> str:
            self.portmone_answers(answer)
            self.portmone_calls_back(callback)
            return self.submit(aged)

        @precondition(lambda self: len(self.submitted) < 3)
        @rule(target=receipts, aged=st.booleans())
        def submit(self, aged: bool) -> str:
            accepted = datetime.now(UTC) - (timedelta(days=1) - AGES_AFTER if aged else timedelta(minutes=1))
            handle = run(self.stack.submit(msisdn=f"38000{len(self.submitted):07d}", accepted_at=accepted.isoformat()))
            receipt = handle.id.removeprefix("payout-")
            self.submitted.append(receipt)
            return receipt

        @rule(answer=st.sampled_from(sorted(PORTMONE_ANSWERS)))
        def portmone_answers(self, answer: str) -> None:
            run(self.stack.faults(PORTMONE_ANSWERS[answer]))

        @rule(callback=st.sampled_from(sorted(CALLBACKS)))
        def portmone_calls_back(self, callback: str) -> None:
            run(self.stack.faults(CALLBACKS[callback]))

        @rule(seconds=st.sampled_from([1, 3, 5]))
        def time_passes(self, seconds: int) -> None:
            run(asyncio.sleep(seconds))

        @rule(receipt=receipts, to=st.sampled_from(["first", "last"]))
        def an_engineer_resets_the_payout(self, receipt: str, to: str) -> None:
            with contextlib.suppress(RPCError, ValueError):  # nothing to reset to yet, or the server refuses
                run(self.stack.reset(self.stack.client.get_workflow_handle(payout_workflow_id(receipt)), to=to))

        @rule(receipt=receipts)
        def portmone_pays_an_open_bill_late(self, receipt: str) -> None:
            run(self.players.portmone_pays_late(receipt))

        @rule(receipt=receipts)
        def portmone_sends_a_late_created_notice(self, receipt: str) -> None:
            run(self.players.late_created_notice(receipt))

        @rule(status=st.sampled_from([503, 400]))
        def telecom_api_fails_next(self, status: int) -> None:
            run(self.players.telecom_fails_next(status))

        @rule(receipt=receipts, prefer_retry=st.booleans())
        def operator_follows_the_runbook(self, receipt: str, prefer_retry: bool) -> None:
            run(self.players.operate(receipt, prefer_retry))

        @rule(receipt=receipts, prefer_retry=st.booleans())
        def operator_looks_in_the_cabinet(self, receipt: str, prefer_retry: bool) -> None:
            run(self.players.look(receipt, prefer_retry))

        @precondition(lambda self: bool(self.players.looked))
        @rule(data=st.data())
        def operator_decides_on_what_they_saw(self, data: st.DataObject) -> None:
            run(self.players.decide_later(data.draw(st.sampled_from(sorted(self.players.looked)))))

        # ---- the promises -------------------------------------------------------------------------

        @invariant()
        def money_moved_at_most_once(self) -> None:
            found = run(self.players.money_breaches())
            assert not found, found

        def teardown(self) -> None:
            try:
                self.players.after_the_run(run, self._quiesce)
            finally:
                with contextlib.suppress(Exception):
                    run(self._stack_cm.__aexit__(None, None, None))
                shutil.rmtree(self.tmp, ignore_errors=True)

        async def _quiesce(self) -> None:
            """Faults end; real seconds pass until every payout is settled (or waits for a person)."""
            self.stack.injected.clear()
            await self.stack.faults(QUIET)
            for _ in range(60):
                if await self.players.quiet():
                    return
                await asyncio.sleep(1)

    return PayoutRecovery


@pytest.mark.timeout(300 + 120 * EXAMPLES)
def test_money_promises_hold_when_people_and_recovery_tools_step_in(server: Server) -> None:
    budget = settings(
        max_examples=EXAMPLES,
        stateful_step_count=STEPS,
        deadline=None,
        derandomize="PAYOUTS_RECOVERY_EXAMPLES" not in os.environ,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    run_state_machine_as_test(machine_for(server), settings=budget)
