"""Rendering a reconciliation report as JSON and CSV (stored in the ledger by `reconcile.run`).

The text carries no run time, only the report day and its cut-off, so a second run on the same day
over the same state renders the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import asdict, fields
from datetime import date

from activities.reconcile_buckets import BUCKETS, Finding, Report

CSV_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Finding))


def to_json(report: Report, day: date) -> str:
    document = {
        "report_day": day.isoformat(),
        "cutoff": report.cutoff.isoformat(),
        "callback_sla_seconds": int(report.sla.total_seconds()),
        "counts": report.counts(),
        "findings": {bucket: [asdict(f) for f in report.findings[bucket]] for bucket in BUCKETS},
    }
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def to_csv(report: Report) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for bucket in BUCKETS:
        for finding in report.findings[bucket]:
            writer.writerow(asdict(finding))
    return out.getvalue()
