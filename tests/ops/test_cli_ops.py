"""`payouts ops` as an operator runs it: a separate process against the running stack (dev server,
sandbox, webhook, workers), judged by its stdout, stderr and exit status."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from payouts.status import PayoutStatus as S
from tests.cli_helpers import parse_error, suggested_commands
from tests.stack import Stack, settings_env

pytestmark = pytest.mark.integration

WAIT = 20.0  # visibility on the dev server lags a little; a safety net, not a measured duration


async def payouts(stack: Stack, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the CLI in its own process (off the event loop: the workers in this process must keep running)."""
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR")}
    env.update(settings_env(stack.settings))
    cwd = stack.settings.data_dir
    return await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "console.cli", *args],
        env=env, cwd=cwd, capture_output=True, text=True, timeout=120,
    )


async def listed(stack: Stack, payout_id: str, *filters: str) -> str:
    """`payouts ops list` output once it shows the payout (the queue is read from Temporal visibility)."""
    async with asyncio.timeout(WAIT):
        while True:
            run = await payouts(stack, "ops", "list", *filters)
            assert run.returncode == 0, run.stderr
            if payout_id in run.stdout:
                return run.stdout
            await asyncio.sleep(0.3)


def row_of(table: str, payout_id: str) -> str:
    return next(line for line in table.splitlines() if line.startswith(payout_id))


async def test_dropped_callback_is_listed_shown_and_retried_to_paid(stack: Stack) -> None:
    # Portmone leaves the bill open and says nothing: after the callback timeout a person decides.
    await stack.faults({"drop_callback": True, "callback_status": "CREATED"})
    handle = await stack.submit()
    view = await stack.wait_status(handle, {S.MANUAL_REVIEW}, timeout=30)
    assert view.escalation_reason == "callback_timeout"

    table = await listed(stack, handle.id)
    assert table.splitlines()[0].split() == ["PAYOUT", "RECEIPT", "AMOUNT", "REASON", "IN", "REVIEW", "SINCE", "AGE",
                                              "BILL"]
    row = row_of(table, handle.id)
    assert view.receipt_id in row and "25.00 UAH" in row and "callback_timeout" in row and str(view.bill_id) in row
    assert "in manual review" in table.splitlines()[-1]
    assert handle.id in (await listed(stack, handle.id, "--reason", "callback_timeout", "--max-age", "1h"))
    for filters in (("--reason", "permanent_error"), ("--min-age", "1h")):
        run = await payouts(stack, "ops", "list", *filters)
        assert run.returncode == 0 and handle.id not in run.stdout, run.stdout

    shown = await payouts(stack, "ops", "show", view.receipt_id)
    assert shown.returncode == 0, shown.stderr
    assert f"ledger:   MANUAL_REVIEW (reason callback_timeout) · bill {view.bill_id}" in shown.stdout
    assert "workflow: RUNNING · PayoutStatus MANUAL_REVIEW · EscalationReason callback_timeout" in shown.stdout
    assert "status AWAITING_CALLBACK → MANUAL_REVIEW (callback_timeout)" in shown.stdout
    assert "timer fired" in shown.stdout and "operator can do now: Portmone never said" in shown.stdout
    assert "bills that may hold money" in shown.stdout
    assert f"round 1 attempt 1: bill {view.bill_id}: created, no final callback" in shown.stdout
    assert "380001234567" not in shown.stdout

    refused = await payouts(stack, "ops", "retry", handle.id, "--reason", "checked the cabinet")
    assert refused.returncode == 1 and refused.stdout == ""
    assert refused.stderr == f"error: retry refused for {handle.id}: missing: operator\n"

    unconfirmed = await payouts(stack, "ops", "retry", handle.id, "--operator", "olena", "--reason", "unpaid")
    assert unconfirmed.returncode == 1 and "confirm that Portmone holds no bill" in unconfirmed.stderr

    # The runbook: the bill is open in the cabinet, so cancel it there, then retry with the confirmation.
    cancelled = await stack.http.post(f"{stack.sandbox_url}/_sandbox/bills/{view.bill_id}/cancel", json={})
    assert cancelled.status_code == 200, cancelled.text
    await stack.faults({"drop_callback": False, "callback_status": "PAYED"})
    retried = await payouts(stack, "ops", "retry", handle.id, "--operator", "olena", "--reason", "unpaid in cabinet",
                            "--confirm-no-bill-at-portmone")
    assert retried.returncode == 0, retried.stderr
    assert retried.stdout.startswith(f"retry accepted for {handle.id}: retry applied: bill round 2 requested "
                                     "(status BILL_REQUESTED; update id ops-")
    paid = await stack.wait_status(handle, {S.PAID})
    assert paid.bill_round == 2

    after = await payouts(stack, "ops", "show", handle.id)
    assert "operator olena: retry — unpaid in cabinet" in after.stdout
    assert "update retry accepted" in after.stdout and "ledger:   PAID" in after.stdout


async def test_refusals_cancel_and_export(stack: Stack, tmp_path: Path) -> None:
    await stack.faults({"callback_status": "REJECTED", "callback_error_code": "30"})
    handle = await stack.submit()
    view = await stack.wait_status(handle, {S.MANUAL_REVIEW})
    await listed(stack, handle.id)

    exported = await payouts(stack, "ops", "export", "--reason", "permanent_error")
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(io.StringIO(exported.stdout)))
    mine = [r for r in rows if r["payout_id"] == handle.id]
    assert len(mine) == 1
    assert (mine[0]["receipt_id"], mine[0]["amount_kopecks"], mine[0]["escalation_reason"]) == (
        view.receipt_id, "2500", "permanent_error:30")
    assert mine[0]["last_error"].startswith("30") and int(mine[0]["age_seconds"]) >= 0
    out_file = tmp_path / "queue.csv"
    to_file = await payouts(stack, "ops", "export", "--output", str(out_file))
    assert to_file.returncode == 0 and out_file.read_text().startswith("payout_id,receipt_id,amount_kopecks")

    no_reference = await payouts(stack, "ops", "mark-paid", handle.id, "--operator", "ivan", "--reason", "paid")
    assert (no_reference.returncode, no_reference.stderr) == (
        1, f"error: mark-paid refused for {handle.id}: missing: external_reference\n")
    no_reason = await payouts(stack, "ops", "cancel", handle.id, "--operator", "ivan")
    assert (no_reason.returncode, no_reason.stderr) == (1, f"error: cancel refused for {handle.id}: missing: reason\n")

    cancelled = await payouts(stack, "ops", "cancel", handle.id, "--operator", "ivan", "--reason", "duplicate receipt")
    assert cancelled.returncode == 0, cancelled.stderr
    assert f"cancel accepted for {handle.id}: cancelled; the user is told (status CANCELLED" in cancelled.stdout
    assert (await handle.result()).status == S.CANCELLED

    again = await payouts(stack, "ops", "cancel", handle.id, "--operator", "ivan", "--reason", "duplicate receipt")
    assert again.returncode == 1 and again.stdout == ""
    assert again.stderr.startswith(f"error: cancel refused for {handle.id}: ")
    shown = await payouts(stack, "ops", "show", handle.id)
    assert "ledger:   CANCELLED (reason operator:duplicate receipt)" in shown.stdout
    assert "workflow: COMPLETED" in shown.stdout
    assert [a.action for a in await stack.ledger.operator_actions.for_payout(handle.id)] == ["cancel"]

    missing = await payouts(stack, "ops", "show", "payout-no-such-receipt")
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == "error: no payout payout-no-such-receipt: neither the ledger nor Temporal knows it\n"


async def test_every_command_ops_suggests_parses(stack: Stack) -> None:
    # An open bill after the callback timeout: `show` suggests all three decisions, with the confirmation.
    await stack.faults({"drop_callback": True, "callback_status": "CREATED"})
    handle = await stack.submit()
    await stack.wait_status(handle, {S.MANUAL_REVIEW}, timeout=30)
    table = await listed(stack, handle.id)
    shown = await payouts(stack, "ops", "show", handle.id)
    assert shown.returncode == 0, shown.stderr

    assert "mark_paid" not in shown.stdout
    commands = suggested_commands(table) + suggested_commands(shown.stdout)
    assert {argv[2] for argv in commands} >= {"show", "mark-paid", "retry", "cancel"}
    for argv in commands:
        assert parse_error(argv) is None, (argv, parse_error(argv))
    assert f"payouts ops retry {handle.id} --operator NAME --reason TEXT --confirm-no-bill-at-portmone" in shown.stdout
