"""Argument parsing and dispatch for `payouts ops …` and `payouts schedules`.

Exit status: 0 done; 1 refused or failed (the reason on stderr); 2 bad settings or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from console.devstate import add_dev_arguments, dev_data_dir, dev_flags
from console.ending import end
from console.helptext import command
from console.ops import decide, queue, report, table, timeline
from console.ops.context import Ops, OpsError, ops_context, settings_for
from console.ops.decide import UPDATE_NAMES
from console.ops.durations import format_age, parse_duration
from console.ops.export import queue_csv
from console.reach import Unreachable
from console.schedules import RECONCILIATION_SCHEDULE_ID, RETENTION_SCHEDULE_ID, TIME_ZONE
from ledger import LedgerError
from payouts.models import payout_workflow_id
from payouts.money import format_amount

OPERATOR_VARIABLE = "PAYOUTS_OPERATOR"  # who decides, when --operator does not say


def operator_of(given: str | None) -> str:
    """Who decides: --operator, else $PAYOUTS_OPERATOR, else nobody (the workflow's validator refuses)."""
    return given if given is not None else os.environ.get(OPERATOR_VARIABLE, "")


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reason", help="only this escalation reason, e.g. callback_timeout or permanent_error (all "
                                    "codes) or permanent_error:30 (default: every reason)")
    p.add_argument("--min-age", type=parse_duration, help="in manual review at least this long (30m, 2h, 1d)")
    p.add_argument("--max-age", type=parse_duration, help="in manual review at most this long")


_DECIDES = (
    "Send the payout's workflow its `{update}` update and print the answer. The workflow validates it "
    "(the payout's status, an operator named, a reason given) and records it in the ledger's audit "
    "before it acts; a refusal is printed with its reason and exits 1. Repeating a call with the same "
    "--update-id returns the first answer and changes nothing (docs/runbook.md)."
)


def _decision(sub: Any, name: str, summary: str, description: str, uses: Sequence[str]) -> argparse.ArgumentParser:
    update = UPDATE_NAMES[name]
    p = command(sub, name, summary, f"{description}\n\n{_DECIDES.format(update=update)}", uses=uses)
    add_dev_arguments(p)
    p.add_argument("payout", help="payout id (payout-<receipt>) or receipt id")
    p.add_argument("--operator", default=None,
                   help=f"who decides, recorded in the ledger (default: ${OPERATOR_VARIABLE})")
    p.add_argument("--reason", default="", help="why; recorded in the ledger")
    p.add_argument("--update-id", default=None, help="repeat an earlier call without a second effect "
                                                     "(default: a new id, printed)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the workflow's answer")
    return p


def add_parsers(sub: Any, *, uses: Sequence[str]) -> None:
    """`payouts ops …` and `payouts schedules`; `uses`: the settings every one of them uses (a Temporal
    client and the ledger: console.ops.context)."""
    ops = command(
        sub, "ops", "operator console: the manual-review queue and decisions",
        "The operator's console (docs/runbook.md): read the payouts that wait in manual review and decide "
        "them. Every subcommand reaches Temporal and the ledger first, and says which does not answer, where, "
        "and how to start it. With --dev it talks to the local `payouts dev` stack. Exit status: 0 done; 1 "
        "refused or failed (the reason on stderr); 2 bad settings or usage.",
        uses=uses,
    )
    ops_sub = ops.add_subparsers(dest="ops_command", required=True, metavar="SUBCOMMAND")

    ls = command(ops_sub, "list", "the manual-review queue as a table, oldest first",
                 "Print the payouts waiting in MANUAL_REVIEW, oldest first: payout, receipt, amount, reason, "
                 "since when, age and bill, and the next command to run. When none waits, say how many await "
                 "Portmone's callback and when the first of them comes here (PAYOUT_CALLBACK_TIMEOUT_SECONDS).",
                 uses=[*uses, "payout.callback_timeout_seconds"])
    add_dev_arguments(ls)
    _filters(ls)

    show = command(ops_sub, "show", "one payout: ledger, workflow and a merged timeline",
                   "Print one payout: its ledger row and its workflow; while it waits in manual review, what "
                   "the operator can do now, the bills that may still hold money and the decision commands ready "
                   "to run; then one timeline of the ledger's rows and the workflow's events in time order.",
                   uses=uses)
    add_dev_arguments(show)
    show.add_argument("payout", help="payout id (payout-<receipt>) or receipt id")

    confirm_help = ("required while `ops show` lists bills that may hold money: you checked Portmone's cabinet, "
                    "and Portmone holds no bill for this receipt that can still be paid (none, or cancelled there)")
    _decision(ops_sub, "retry", "try again (new bill; after telecom_failed only the top-up)",
              "Try the payout again: a new bill round, or, when Portmone paid and only the telecom top-up "
              "failed, the top-up alone (same idempotency key).", uses).add_argument(
        "--confirm-no-bill-at-portmone", action="store_true", help=confirm_help)
    _decision(ops_sub, "mark-paid", "the payout was paid outside the automation",
              "Close the payout as PAID on evidence found outside the automation (a payment in Portmone's "
              "cabinet, a ticket), with its reference.", uses).add_argument(
        "--reference", default="", help="external reference (Portmone payment id, ticket); required")
    _decision(ops_sub, "cancel", "close without paying; the user is told",
              "Close the payout as CANCELLED without paying; the user is told.", uses).add_argument(
        "--confirm-no-bill-at-portmone", action="store_true", help=confirm_help)

    export = command(ops_sub, "export", "the manual-review queue as CSV",
                     "Write the payouts waiting in MANUAL_REVIEW as CSV, oldest first, with the same filters as "
                     "`ops list`.", uses=uses)
    add_dev_arguments(export)
    _filters(export)
    export.add_argument("--output", type=Path, help="write to this file (default: stdout)")

    rep = command(ops_sub, "report", "the stored daily reconciliation report (default: the latest)",
                  f"Print a daily reconciliation report as the `{RECONCILIATION_SCHEDULE_ID}` Schedule stored it "
                  "in the ledger: the latest, or the one of --day; as a table, or the stored JSON or CSV.",
                  uses=uses)
    add_dev_arguments(rep)
    rep.add_argument("--day", type=date.fromisoformat, help="the report of this day, YYYY-MM-DD (default: the latest)")
    rep.add_argument("--format", choices=report.FORMATS, default="text",
                     help="text (a table), or the stored json or csv")
    rep.add_argument("--output", type=Path, help="write to this file (default: stdout)")

    schedules = command(
        sub, "schedules", "create or update the Temporal Schedules (reconciliation, archive retention); safe to repeat",
        f"Create the Temporal Schedules `{RECONCILIATION_SCHEDULE_ID}` (the daily reconciliation report) and "
        f"`{RETENTION_SCHEDULE_ID}` (pruning the exchange archive and delivered payout events), daily in "
        f"{TIME_ZONE} time on TEMPORAL_TASK_QUEUE, or bring existing ones to that definition while keeping an "
        "operator's pause. Run it at each deploy; workers do not create them. Like `ops`, it reaches Temporal "
        "and the ledger first.",
        uses=uses,
    )
    add_dev_arguments(schedules)


def payout_id_of(text: str) -> str:
    return text if text.startswith("payout-") else payout_workflow_id(text)


def connection_flags(args: argparse.Namespace) -> list[str]:
    """What a suggested command needs to reach the same stack as this one."""
    return dev_flags(dev_data_dir(args.data_dir)) if args.dev else []


def run(args: argparse.Namespace) -> int:
    settings = settings_for(args.dev, args.data_dir)
    try:
        code = asyncio.run(_run(args, settings))
    except Unreachable as exc:
        print("\n".join(f"error: {problem}" for problem in exc.problems), file=sys.stderr)
        code = 1
    except (OpsError, LedgerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 1
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(x) for x in e['loc'])}: {e['msg']}" for e in exc.errors())
        print(f"error: {problems}", file=sys.stderr)
        code = 1
    return end(code)


async def _run(args: argparse.Namespace, settings: Any) -> int:
    async with ops_context(settings) as ops:
        if args.command == "schedules":
            return await _schedules(ops)
        command = args.ops_command
        if command == "list":
            return await _list(ops, args)
        if command == "show":
            print(await timeline.show(ops, payout_id_of(args.payout), connection_flags(args)))
            return 0
        if command == "export":
            return await _export(ops, args)
        if command == "report":
            return await _report(ops, args)
        return await _decide(ops, args)


def _queue_filter(args: argparse.Namespace) -> queue.QueueFilter:
    return queue.QueueFilter(reason=args.reason, min_age=args.min_age, max_age=args.max_age)


async def _list(ops: Ops, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    items = await queue.manual_queue(ops, _queue_filter(args), now)
    if not items:
        print("no payouts in manual review" + (" matching the filters" if args.reason or args.min_age
                                                 or args.max_age else ""))
        waiting = await queue.awaiting_callback(ops)
        if waiting.count:
            timeout = timedelta(seconds=ops.settings.payout.callback_timeout_seconds)
            arrives = waiting.escalates_at(timeout)
            when = f"; the oldest at about {arrives:%H:%M:%S} UTC" if arrives else ""
            print(f"{waiting.count} payout(s) await Portmone's callback: without one, each comes here after the "
                  f"callback timeout ({int(timeout.total_seconds())} s){when}")
        return 0
    rows = [
        [i.payout_id, i.receipt_id, f"{format_amount(i.amount_kopecks)} {i.currency}", i.reason or "—",
         i.since.strftime("%Y-%m-%d %H:%M UTC"), format_age(i.age(now)), i.bill_id or "—"]
        for i in items
    ]
    print(table.render(["PAYOUT", "RECEIPT", "AMOUNT", "REASON", "IN REVIEW SINCE", "AGE", "BILL"], rows))
    show = shlex.join(["payouts", "ops", "show", items[0].payout_id, *connection_flags(args)])
    print(f"{len(items)} payout(s) in manual review. Next: {show}")
    return 0


async def _export(ops: Ops, args: argparse.Namespace) -> int:
    now = datetime.now(UTC)
    items = await queue.manual_queue(ops, _queue_filter(args), now)
    text = queue_csv(items, now)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        print(f"{len(items)} payout(s) written to {args.output}")
    return 0


async def _report(ops: Ops, args: argparse.Namespace) -> int:
    stored = await report.stored(ops, args.day)
    text = report.render(stored, args.format)
    if args.output is None:
        sys.stdout.write(text)
    else:
        args.output.write_text(text, encoding="utf-8")
        print(f"reconciliation report of {stored.report_day.isoformat()} written to {args.output}")
    return 0


async def _decide(ops: Ops, args: argparse.Namespace) -> int:
    action = args.ops_command
    command = decide.command_for(
        action,
        operator=operator_of(args.operator),
        reason=args.reason,
        reference=getattr(args, "reference", ""),
        confirm_no_bill=getattr(args, "confirm_no_bill_at_portmone", False),
    )
    update_id = args.update_id or decide.new_update_id()
    payout_id = payout_id_of(args.payout)
    result = await decide.send(ops, payout_id, action, command, update_id, args.timeout)
    if not result.accepted:
        print(f"error: {action} not applied to {payout_id}: {result.message} (status {result.status.value}; "
              f"update id {update_id})", file=sys.stderr)
        return 1
    print(f"{action} accepted for {payout_id}: {result.message} (status {result.status.value}; "
          f"update id {update_id})")
    return 0


async def _schedules(ops: Ops) -> int:
    from console.schedules import ensure_schedules

    for schedule_id, outcome in await ensure_schedules(ops.client, ops.settings.temporal.task_queue):
        print(f"schedule {schedule_id}: {outcome}")
    return 0
