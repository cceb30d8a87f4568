"""A stateful property test of the money path: Hypothesis drives fault *sequences* through the real
stack (sandbox, webhook, ledger, workers, Temporal's time-skipping server) and checks the service's
promises (tests/promises.py) against Portmone's own record (the sandbox), the ledger and every run's
history: the money promises after every step, all of them once the run has quieted down.

Actors: Portmone's answers (ok, each refusal class, 5xx, a hang after the bill was committed, a slow
answer), its callbacks (paid, declined transient/permanent, reversed, never settled; dropped,
duplicated, out of order, before the answer, late, and a late CREATED notice for a bill an operator
may have confirmed), a worker dying right after Portmone answered, ledger outages of one call to "until
it recovers" (hours of virtual time: the history must stay bounded), a Temporal the webhook cannot
reach, Temporal cancellation requests, the telecom API failing while a late paid callback is applied,
time passing, and operators at any moment: following docs/runbook.md at once (they look at the sandbox
as at Portmone's cabinet and cancel open bills there before confirming), or deciding long after they
looked, on evidence that may have changed. An engineer's Reset and a receipt ageing past the
eligibility window need the dev server: tests/property/test_recovery_state_machine.py.

Continue-as-new has tests of its own: the Java time-skipping server hangs a continue-as-new that
follows a cancellation request (the real server does not: tests/integration/
test_cancel_then_continue_as_new.py), so runs here stay short of it.

Budget: `PAYOUTS_PROPERTY_EXAMPLES` (default 5, derandomized so CI is repeatable); a long hunt:

    PAYOUTS_PROPERTY_EXAMPLES=300 .venv/bin/pytest tests/property -x -p no:cacheprovider
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from datetime import timedelta
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
from tests.temporal_envs import time_skipping_server

EXAMPLES = int(os.environ.get("PAYOUTS_PROPERTY_EXAMPLES", "5"))
STEPS = int(os.environ.get("PAYOUTS_PROPERTY_STEPS", "14"))
CALLBACK_TIMEOUT = 3600
REMINDER = 4 * 3600
SKIP_STEP_SECONDS = 900

PORTMONE_ANSWERS: dict[str, dict[str, Any]] = {
    "ok": {},
    "transient_once": {"fail_codes": {"1": {"times": 1}}},
    "transient_all_attempts": {"fail_codes": {"2": {"times": 6}}},
    "permanent": {"fail_codes": {"20": {"times": 1}}},
    "configuration": {"fail_codes": {"13": {"times": 1}}},
    "http_5xx": {"http_5xx": {"times": 1}},
    "hang_after_commit": {"commit_then_hang": {"times": 1}},
    "slow": {"latency_ms": {"times": 1, "ms": 300}},
}
CALLBACK_VERDICTS: dict[str, dict[str, Any]] = {
    "paid": {"callback_verdicts": None, "callback_status": "PAYED", "callback_error_code": None},
    "declined_transient": {"callback_verdicts": None, "callback_status": "REJECTED", "callback_error_code": "4"},
    "declined_permanent": {"callback_verdicts": None, "callback_status": "REJECTED", "callback_error_code": "30"},
    "reversed": {"callback_verdicts": None, "callback_status": "RETURN", "callback_error_code": None},
    "never_settled": {"callback_verdicts": None, "callback_status": "CREATED", "callback_error_code": None},
    "mixed": {"callback_verdicts": {"PAYED": 0.6, "REJECTED:3": 0.15, "REJECTED:24": 0.15, "RETURN": 0.1}},
}
DELIVERY: dict[str, dict[str, Any]] = {
    "normal": {"drop_callback": None, "duplicate_callback": None, "out_of_order": None,
               "callback_before_answer": None},
    "dropped": {"drop_callback": {"times": 1}},
    "duplicated": {"duplicate_callback": {"times": 1}},
    "out_of_order": {"out_of_order": {"times": 1}},
    "before_answer": {"callback_before_answer": {"times": 1}},
}
LEDGER_PARTS = ["everything", "payouts.reserve", "payouts.transition", "payouts.escalate", "attempts.open_bills",
                "attempts.start", "attempts.end", "callbacks.set_bill_id", "operator_actions.record",
                "callbacks.store", "callbacks.undelivered"]


class Harness:
    """The loop thread, and one time-skipping server per example (a fresh clock and history each time:
    0.1 s to start; a shared server slowed down as examples piled up)."""

    def __init__(self) -> None:
        self.loop = LoopThread()
        self.env: WorkflowEnvironment | None = None
        self._env_cm: Any = None

    def start_server(self) -> WorkflowEnvironment:
        self._env_cm = time_skipping_server()
        self.env = self.loop.run(self._env_cm.__aenter__())
        return self.env

    def stop_server(self) -> None:
        if self._env_cm is not None:
            with contextlib.suppress(Exception):
                self.loop.run(self._env_cm.__aexit__(None, None, None))
        self._env_cm = self.env = None

    async def skip(self, seconds: int) -> None:
        """Virtual time passes, in steps: during a long outage every retry in a step runs for real."""
        assert self.env is not None
        while seconds > 0:
            step = min(seconds, SKIP_STEP_SECONDS)
            for _ in range(10):
                try:
                    await self.env.sleep(timedelta(seconds=step))
                    break
                except RPCError:
                    # The test server keeps its clock still while an activity runs (a bill activity riding
                    # out a ledger outage runs for real seconds); its sleep call can time out meanwhile.
                    await asyncio.sleep(1)
            seconds -= step

    def close(self) -> None:
        self.stop_server()
        self.loop.close()


@pytest.fixture(scope="module")
def harness() -> Iterator[Harness]:
    h = Harness()
    yield h
    h.close()


def machine_for(h: Harness) -> type[RuleBasedStateMachine]:
    class PayoutMoney(RuleBasedStateMachine):
        receipts = Bundle("receipts")

        def __init__(self) -> None:
            super().__init__()
            self.tmp = Path(tempfile.mkdtemp(prefix="payouts-property-"))
            self.env = h.start_server()
            self._stack_cm = running_stack(
                self.env.client, self.tmp, read_timeout=1.0, telecom=True,
                payout=PayoutSettings(callback_timeout_seconds=CALLBACK_TIMEOUT, retry_backoff_seconds=300,
                                      max_bill_rounds=2, manual_reminder_seconds=REMINDER),
                ledger_settings=LedgerSettings(url=f"sqlite+aiosqlite:///{self.tmp}/ledger.db", user_daily_limit=100),
            )
            self.stack: Stack = h.loop.run(self._stack_cm.__aenter__())
            self.submitted: list[str] = []
            self.players = Players(self.stack, self.submitted)

        # ---- the world --------------------------------------------------------------------------

        @initialize(
            target=receipts,
            answer=st.sampled_from(sorted(PORTMONE_ANSWERS)),
            verdict=st.sampled_from(sorted(CALLBACK_VERDICTS)),
            delivery=st.sampled_from(sorted(DELIVERY)),
        )
        def first_receipt(self, answer: str, verdict: str, delivery: str) -> str:
            self.portmone_answers(answer)
            self.portmone_calls_back(verdict, delivery)
            return self.submit()

        @precondition(lambda self: len(self.submitted) < 3)
        @rule(target=receipts)
        def submit(self) -> str:
            handle = h.loop.run(self.stack.submit(msisdn=f"38000{len(self.submitted):07d}"))
            receipt_id = handle.id.removeprefix("payout-")
            self.submitted.append(receipt_id)
            return receipt_id

        @rule(answer=st.sampled_from(sorted(PORTMONE_ANSWERS)))
        def portmone_answers(self, answer: str) -> None:
            h.loop.run(self.stack.faults(PORTMONE_ANSWERS[answer]))

        @rule(verdict=st.sampled_from(sorted(CALLBACK_VERDICTS)), delivery=st.sampled_from(sorted(DELIVERY)))
        def portmone_calls_back(self, verdict: str, delivery: str) -> None:
            h.loop.run(self.stack.faults({**CALLBACK_VERDICTS[verdict], **DELIVERY[delivery]}))

        @rule()
        def worker_dies_after_portmone_answers(self) -> None:
            self.stack.injected.client.crash_after_send.arm(times=1)

        @rule(part=st.sampled_from(LEDGER_PARTS), calls=st.sampled_from([1, 3, None]))
        def ledger_outage(self, part: str, calls: int | None) -> None:
            faults = self.stack.injected.ledger
            (faults.everything if part == "everything" else faults.method(part)).arm(times=calls)

        @rule()
        def ledger_recovers(self) -> None:
            self.stack.injected.ledger.clear()

        @rule(down=st.booleans())
        def temporal_unreachable_for_the_webhook(self, down: bool) -> None:
            signals = self.stack.injected.temporal.signals
            signals.arm() if down else signals.disarm()

        @rule(seconds=st.sampled_from([1, 61, 301, 3601, 14401]))
        def time_passes(self, seconds: int) -> None:
            h.loop.run(h.skip(seconds))

        @rule(receipt=receipts)
        def portmone_pays_an_open_bill_late(self, receipt: str) -> None:
            h.loop.run(self.players.portmone_pays_late(receipt))

        @rule(receipt=receipts)
        def someone_requests_cancellation(self, receipt: str) -> None:
            with contextlib.suppress(RPCError):  # already closed
                h.loop.run(self.stack.client.get_workflow_handle(payout_workflow_id(receipt)).cancel())

        @rule(receipt=receipts, prefer_retry=st.booleans())
        def operator_follows_the_runbook(self, receipt: str, prefer_retry: bool) -> None:
            h.loop.run(self.players.operate(receipt, prefer_retry))

        @rule(receipt=receipts, prefer_retry=st.booleans())
        def operator_looks_in_the_cabinet(self, receipt: str, prefer_retry: bool) -> None:
            h.loop.run(self.players.look(receipt, prefer_retry))

        @precondition(lambda self: bool(self.players.looked))
        @rule(data=st.data())
        def operator_decides_on_what_they_saw(self, data: st.DataObject) -> None:
            h.loop.run(self.players.decide_later(data.draw(st.sampled_from(sorted(self.players.looked)))))

        @rule(receipt=receipts)
        def portmone_sends_a_late_created_notice(self, receipt: str) -> None:
            h.loop.run(self.players.late_created_notice(receipt))

        @rule(status=st.sampled_from([503, 400]))
        def telecom_api_fails_next(self, status: int) -> None:
            h.loop.run(self.players.telecom_fails_next(status))

        # ---- the promises -------------------------------------------------------------------------

        @invariant()
        def money_moved_at_most_once(self) -> None:
            found = h.loop.run(self.players.money_breaches())
            assert not found, found

        def teardown(self) -> None:
            try:
                self.players.after_the_run(h.loop.run, self._quiesce)
            finally:
                with contextlib.suppress(Exception):
                    h.loop.run(self._stack_cm.__aexit__(None, None, None))
                h.stop_server()
                shutil.rmtree(self.tmp, ignore_errors=True)

        async def _quiesce(self) -> None:
            """Faults end; time passes until every payout is settled (or waits for a person) and quiet."""
            self.stack.injected.clear()
            await self.stack.faults({**CALLBACK_VERDICTS["paid"], **DELIVERY["normal"], "fail_codes": None,
                                     "http_5xx": None, "commit_then_hang": None, "latency_ms": None,
                                     "telecom_fail": None})
            for _ in range(12):
                await h.skip(CALLBACK_TIMEOUT + 1)
                await asyncio.sleep(1.0)  # the webhook's redelivery sweep and the sandbox's callbacks
                if await self.players.quiet():
                    return

    return PayoutMoney


@pytest.mark.timeout(300 + 60 * EXAMPLES)  # the whole hunt is one test: its budget grows with the examples
def test_money_promises_hold_under_fault_sequences(harness: Harness) -> None:
    budget = settings(
        max_examples=EXAMPLES,
        stateful_step_count=STEPS,
        deadline=None,
        derandomize="PAYOUTS_PROPERTY_EXAMPLES" not in os.environ,
        suppress_health_check=list(HealthCheck),
        report_multiple_bugs=False,
    )
    run_state_machine_as_test(machine_for(harness), settings=budget)
