"""Record the histories that tests/test_replay.py replays: one per shape a payout can take.

    .venv/bin/python -m tests.histories.record                  # every shape
    .venv/bin/python -m tests.histories.record late_callback    # only the shapes named

No deployment exists yet (DESIGN.md §7), so a workflow change re-records the shapes whose commands it
changes, and every committed history must keep replaying (the determinism check). From the first
production deployment on, histories are kept, never re-recorded: docs/development.md ("Changing the
workflow") says how changes go in then.

Recorded in virtual time on the Java test server, through the real sandbox, webhook, ledger and workers.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from payouts.models import OperatorCancel, OperatorMarkPaid, OperatorResult, OperatorRetry
from payouts.names import UpdateName, WorkflowName
from payouts.status import PayoutStatus as S
from runtime.settings import LedgerSettings, PayoutSettings
from tests.stack import Stack, running_stack
from tests.temporal_envs import dev_server, time_skipping_server

HERE = Path(__file__).parent
FOLDER = HERE / WorkflowName.PAYOUT
CALLBACK_TIMEOUT = 3600
REMINDER = 4 * 3600
Handle = WorkflowHandle[Any, Any]
Shape = Callable[[Stack, WorkflowEnvironment], Awaitable[Handle]]
OPEN_BILL = {"drop_callback": True, "callback_status": "CREATED"}
PERMANENT = {"callback_status": "REJECTED", "callback_error_code": "30"}


def policy(**overrides: int) -> PayoutSettings:
    values = {"callback_timeout_seconds": CALLBACK_TIMEOUT, "retry_backoff_seconds": 300,
              "manual_reminder_seconds": REMINDER, "max_bill_rounds": 2}
    values.update(overrides)
    return PayoutSettings(**values)


async def decide(handle: Handle, name: str, cmd: Any) -> None:
    result: OperatorResult = await handle.execute_update(name, cmd, result_type=OperatorResult)
    assert result.accepted, result


async def timed_out(stack: Stack, env: WorkflowEnvironment, faults: dict[str, Any]) -> Handle:
    await stack.faults(faults)
    handle = await stack.submit()
    await stack.wait_status(handle, {S.AWAITING_CALLBACK})
    await env.sleep(timedelta(seconds=CALLBACK_TIMEOUT + 1))
    await stack.wait_status(handle, {S.MANUAL_REVIEW})
    return handle


async def happy_path(stack: Stack, env: WorkflowEnvironment) -> Handle:
    handle = await stack.submit()
    await stack.wait_status(handle, {S.PAID})
    return handle


async def transient_round(stack: Stack, env: WorkflowEnvironment) -> Handle:
    await stack.faults({"callback_status": "REJECTED", "callback_error_code": "4"})
    handle = await stack.submit()
    await stack.wait_status(handle, {S.RETRY_SCHEDULED})
    await stack.faults({"callback_status": "PAYED", "callback_error_code": None})
    await env.sleep(timedelta(seconds=301))
    await stack.wait_status(handle, {S.PAID})
    return handle


async def outcome_unknown(stack: Stack, env: WorkflowEnvironment) -> Handle:
    await stack.faults({"commit_then_hang": {"times": 1}, **OPEN_BILL})
    handle = await stack.submit()
    await stack.wait_status(handle, {S.MANUAL_REVIEW})
    return handle


async def lost_answer_paid_by_echo(stack: Stack, env: WorkflowEnvironment) -> Handle:
    await stack.faults({"commit_then_hang": {"times": 1}})
    handle = await stack.submit()
    await stack.wait_status(handle, {S.PAID})
    return handle


async def callback_timeout(stack: Stack, env: WorkflowEnvironment) -> Handle:
    return await timed_out(stack, env, OPEN_BILL)


async def late_callback(stack: Stack, env: WorkflowEnvironment) -> Handle:
    handle = await timed_out(stack, env, OPEN_BILL)
    view = await stack.view(handle)
    await stack.paid_at_portmone(str(view.bill_id))
    await stack.wait_status(handle, {S.PAID})
    return handle


async def refused_then(stack: Stack, name: str, cmd: Any, until: S) -> Handle:
    """Portmone refuses the bill for good; an operator decides `name`; the payout ends `until`."""
    await stack.faults(PERMANENT)
    handle = await stack.submit()
    await stack.wait_status(handle, {S.MANUAL_REVIEW})
    await stack.faults({"callback_status": "PAYED", "callback_error_code": None})
    await decide(handle, name, cmd)
    await stack.wait_status(handle, {until})
    return handle


async def update_retry(stack: Stack, env: WorkflowEnvironment) -> Handle:
    return await refused_then(stack, UpdateName.RETRY, OperatorRetry(operator="olena", reason="payee fixed"), S.PAID)


async def update_retry_confirmed(stack: Stack, env: WorkflowEnvironment) -> Handle:
    handle = await timed_out(stack, env, OPEN_BILL)
    view = await stack.view(handle)
    await stack.http.post(f"{stack.sandbox_url}/_sandbox/bills/{view.bill_id}/cancel", json={})
    await stack.faults({"drop_callback": False, "callback_status": "PAYED"})
    await decide(handle, UpdateName.RETRY, OperatorRetry(operator="olena", reason="cancelled in cabinet",
                                                confirmed_no_bill_at_portmone=True))
    await stack.wait_status(handle, {S.PAID})
    return handle


async def update_mark_paid(stack: Stack, env: WorkflowEnvironment) -> Handle:
    cmd = OperatorMarkPaid(operator="olena", reason="by hand", external_reference="X-1")
    return await refused_then(stack, UpdateName.MARK_PAID, cmd, S.PAID)


async def update_cancel(stack: Stack, env: WorkflowEnvironment) -> Handle:
    return await refused_then(stack, UpdateName.CANCEL, OperatorCancel(operator="olena", reason="fraud"), S.CANCELLED)


async def telecom_retry(stack: Stack, env: WorkflowEnvironment) -> Handle:
    await stack.faults({"telecom_fail": {"times": 1, "status": 400}})
    handle = await stack.submit()
    await stack.wait_status(handle, {S.MANUAL_REVIEW})
    await decide(handle, UpdateName.RETRY, OperatorRetry(operator="olena", reason="telecom API is back"))
    await stack.wait_status(handle, {S.PAID})
    return handle


async def cancellation_requested(stack: Stack, env: WorkflowEnvironment) -> Handle:
    await stack.faults(OPEN_BILL)
    handle = await stack.submit()
    await stack.wait_status(handle, {S.AWAITING_CALLBACK})
    await handle.cancel()
    await stack.wait_status(handle, {S.MANUAL_REVIEW})
    return handle


async def late_callback_while_the_top_up_retries(stack: Stack, env: WorkflowEnvironment) -> Handle:
    """A late paid callback whose top-up needs a second try: operator decisions are refused meanwhile."""
    handle = await timed_out(stack, env, OPEN_BILL)
    view = await stack.view(handle)
    await stack.faults({"telecom_fail": {"times": 1, "status": 503}})
    with env.auto_time_skipping_disabled():  # the top-up's retry comes in real seconds
        await stack.paid_at_portmone(str(view.bill_id))
        await stack.wait_status(handle, {S.PAID}, timeout=60)
    return handle


async def reset_in_manual_review(stack: Stack, env: WorkflowEnvironment) -> Handle:
    """The answer to bills.create is lost; an engineer resets the payout in manual review; the new run
    follows the ledger and its evidence; Portmone pays the bill, its callback routed by echo. The new
    run's history is the one kept. (Dev server: the Java test server does not reset.)"""
    await stack.faults({"commit_then_hang": {"times": 1}, **OPEN_BILL})
    handle = await stack.submit()
    await stack.wait_status(handle, {S.MANUAL_REVIEW}, timeout=60)
    latest = await stack.reset(handle)
    await stack.wait_status(latest, {S.MANUAL_REVIEW})
    [bill] = await stack.bills_for()
    await stack.paid_at_portmone(bill["bill_id"])
    await stack.wait_status(latest, {S.PAID}, timeout=60)
    return latest


async def continue_as_new(stack: Stack, env: WorkflowEnvironment) -> Handle:
    """Two reminders per run (the stack's policy); the history saved is the first run's."""
    handle = await timed_out(stack, env, OPEN_BILL)
    first_run = (await handle.describe()).run_id
    for _ in range(2):
        await env.sleep(timedelta(seconds=REMINDER + 1))
    for _ in range(100):
        if (await stack.client.get_workflow_handle(handle.id).describe()).run_id != first_run:
            break
        await asyncio.sleep(0.1)
    return stack.client.get_workflow_handle(handle.id, run_id=first_run)


SHAPES: dict[str, Shape] = {
    "transient_round": transient_round,
    "outcome_unknown": outcome_unknown,
    "lost_answer_paid_by_echo": lost_answer_paid_by_echo,
    "callback_timeout": callback_timeout,
    "late_callback": late_callback,
    "update_retry": update_retry,
    "update_retry_confirmed": update_retry_confirmed,
    "update_mark_paid": update_mark_paid,
    "update_cancel": update_cancel,
    "telecom_retry": telecom_retry,
    "cancellation_requested": cancellation_requested,
    "late_callback_while_the_top_up_retries": late_callback_while_the_top_up_retries,
}
WITH_SHORT_RUNS: dict[str, Shape] = {"continue_as_new": continue_as_new}
# On the dev server: a Reset (the Java test server has none), and the happy path, whose length the replay
# test holds to the history bound (the Java test server adds workflow tasks of its own, more or fewer
# with the machine's timing).
ON_DEV_SERVER: dict[str, Shape] = {"happy_path": happy_path, "reset_in_manual_review": reset_in_manual_review}


async def record(stack: Stack, env: WorkflowEnvironment, name: str, shape: Shape) -> None:
    path = FOLDER / f"{name}.json"
    await stack.http.post(f"{stack.sandbox_url}/_sandbox/reset")
    handle = await shape(stack, env)
    await asyncio.sleep(1)  # let the last workflow task finish, so the history is complete
    history = await handle.fetch_history()
    path.write_text(history.to_json())
    print(f"recorded {path.relative_to(HERE)}: {len(history.events)} events")


async def main(names: list[str]) -> None:
    unknown = set(names) - set(SHAPES) - set(WITH_SHORT_RUNS) - set(ON_DEV_SERVER)
    if unknown:
        known = ", ".join([*SHAPES, *WITH_SHORT_RUNS, *ON_DEV_SERVER])
        raise SystemExit(f"no such shape: {', '.join(sorted(unknown))} (shapes: {known})")
    FOLDER.mkdir(exist_ok=True)
    async with time_skipping_server() as env:
        for every, settings in ((SHAPES, policy()), (WITH_SHORT_RUNS, policy(reminders_per_run=2))):
            await record_all(env, every, settings, names)
    dev_shapes = {name: shape for name, shape in ON_DEV_SERVER.items() if not names or name in names}
    if dev_shapes:
        async with dev_server() as env:
            await record_all(env, dev_shapes, policy(callback_timeout_seconds=30), names)


async def record_all(
    env: WorkflowEnvironment, every: dict[str, Shape], settings: PayoutSettings, names: list[str]
) -> None:
    shapes = {name: shape for name, shape in every.items() if not names or name in names}
    if not shapes:
        return
    with tempfile.TemporaryDirectory() as tmp:
        ledger = LedgerSettings(url=f"sqlite+aiosqlite:///{tmp}/ledger.db", user_daily_limit=100)
        async with running_stack(env.client, Path(tmp), read_timeout=2.0, telecom=True, payout=settings,
                                 ledger_settings=ledger) as stack:  # fmt: skip
            for name, shape in shapes.items():
                await record(stack, env, name, shape)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1:]))
