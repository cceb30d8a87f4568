"""Argument parsing and dispatch for `payouts ops …` and `payouts schedules`.

Exit status: 0 done; 1 refused or failed (the reason on stderr); 2 bad settings or usage.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from console.devstate import add_dev_arguments, dev_data_dir, dev_flags
from console.ending import end
from console.ops import decide, queue, report, table, timeline
from console.ops.context import Ops, OpsError, ops_context, settings_for
from console.ops.durations import format_age, parse_duration
from console.ops.export import queue_csv
from console.reach import Unreachable
from ledger import LedgerError
from payouts.models import payout_workflow_id
from payouts.money import format_amount


def _filters(p: argparse.ArgumentParser) -> None:
    p.add_argument("--reason", help="escalation reason, e.g. callback_timeout or permanent_error (all codes) "
                                    "or permanent_error:30")
    p.add_argument("--min-age", type=parse_duration, help="in manual review at least this long (30m, 2h, 1d)")
    p.add_argument("--max-age", type=parse_duration, help="in manual review at most this long")


def _decision(sub: Any, name: str, help_text: str) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = sub.add_parser(name, help=help_text)
    add_dev_arguments(p)
    p.add_argument("payout", help="payout id (payout-<receipt>) or receipt id")
    p.add_argument("--operator", default=os.environ.get("PAYOUTS_OPERATOR", ""),
                   help="who decides (default: $PAYOUTS_OPERATOR); recorded in the ledger")
    p.add_argument("--reason", default="", help="why; recorded in the ledger")
    p.add_argument("--update-id", default=None, help="repeat an earlier call without a second effect")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for the workflow's answer")
    return p


def add_parsers(sub: Any) -> None:
    ops = sub.add_parser("ops", help="operator console: the manual-review queue and decisions")
    ops_sub = ops.add_subparsers(dest="ops_command", required=True)

    ls = ops_sub.add_parser("list", help="the manual-review queue as a table, oldest first")
    add_dev_arguments(ls)
    _filters(ls)

    show = ops_sub.add_parser("show", help="one payout: ledger, workflow and a merged timeline")
    add_dev_arguments(show)
    show.add_argument("payout", help="payout id (payout-<receipt>) or receipt id")

    confirm_help = ("required while `ops show` lists bills that may hold money: you checked Portmone's cabinet, "
                    "and Portmone holds no bill for this receipt that can still be paid (none, or cancelled there)")
    _decision(ops_sub, "retry", "try again (new bill; after telecom_failed only the top-up)").add_argument(
        "--confirm-no-bill-at-portmone", action="store_true", help=confirm_help)
    _decision(ops_sub, "mark-paid", "the payout was paid outside the automation").add_argument(
        "--reference", default="", help="external reference (Portmone payment id, ticket); required")
    _decision(ops_sub, "cancel", "close without paying; the user is told").add_argument(
        "--confirm-no-bill-at-portmone", action="store_true", help=confirm_help)

    export = ops_sub.add_parser("export", help="the manual-review queue as CSV")
    add_dev_arguments(export)
    _filters(export)
    export.add_argument("--output", type=Path, help="write to this file instead of stdout")

    rep = ops_sub.add_parser("report", help="the stored daily reconciliation report (default: the latest)")
    add_dev_arguments(rep)
    rep.add_argument("--day", type=date.fromisoformat, help="the report of this day (YYYY-MM-DD)")
    rep.add_argument("--format", choices=report.FORMATS, default="text",
                     help="text (a table), or the stored json or csv")
    rep.add_argument("--output", type=Path, help="write to this file instead of stdout")

    schedules = sub.add_parser("schedules", help="create or update the Temporal Schedules (reconciliation, "
                                                 "archive retention); safe to repeat")
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
        operator=args.operator,
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
