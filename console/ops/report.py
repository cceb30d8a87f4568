"""`payouts ops report`: the stored reconciliation report of a day (default: the latest), as a table,
or as the JSON or CSV text the reconciliation stored."""

from __future__ import annotations

import json
from datetime import date

from console.ops import table
from console.ops.context import Ops, OpsError
from ledger.reconciliation_reports import StoredReport

FORMATS = ("text", "json", "csv")


async def stored(ops: Ops, day: date | None) -> StoredReport:
    report = await ops.ledger.reconciliation_reports.get(day)
    if report is None:
        which = f"for {day.isoformat()}" if day else "yet"
        raise OpsError(f"no reconciliation report stored {which}: the `payouts-reconciliation` Schedule writes one "
                       "each night (`payouts schedules` creates it; `temporal schedule trigger --schedule-id "
                       "payouts-reconciliation` runs it now)")
    return report


def render(report: StoredReport, fmt: str) -> str:
    if fmt == "json":
        return report.document
    if fmt == "csv":
        return report.csv
    document = json.loads(report.document)
    lines = [
        f"Reconciliation of {report.report_day.isoformat()} (cut-off {report.cutoff:%Y-%m-%d %H:%M} UTC, "
        f"stored {report.written_at:%Y-%m-%d %H:%M} UTC): {report.findings} finding(s)",
        "",
        table.render(["BUCKET", "FINDINGS"], [[bucket, str(n)] for bucket, n in document["counts"].items()]),
    ]
    rows = [
        [bucket, f["payout_id"] or "—", f["bill_id"] or "—", f["ledger_status"] or "—", f["workflow_status"] or "—",
         f["detail"]]
        for bucket, findings in document["findings"].items()
        for f in findings
    ]
    if rows:
        lines += ["", table.render(["BUCKET", "PAYOUT", "BILL", "LEDGER", "WORKFLOW", "DETAIL"], rows)]
    return "\n".join(lines) + "\n"
