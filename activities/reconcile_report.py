"""Writing a reconciliation report: `reconciliation-<day>.json` and `.csv`, replaced atomically.

The files carry no run time, only the report day and its cut-off, so a second run on the same day
over the same state writes the same bytes.
"""

from __future__ import annotations

import csv
import io
import json
import os
import tempfile
from dataclasses import asdict, fields
from datetime import date
from pathlib import Path

from activities.reconcile_buckets import BUCKETS, Finding, Report

CSV_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Finding))


def report_paths(report_dir: Path, day: date) -> tuple[Path, Path]:
    stem = report_dir / f"reconciliation-{day.isoformat()}"
    return stem.with_suffix(".json"), stem.with_suffix(".csv")


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


def _replace(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write(report: Report, report_dir: Path, day: date) -> tuple[Path, Path]:
    json_path, csv_path = report_paths(report_dir, day)
    _replace(json_path, to_json(report, day))
    _replace(csv_path, to_csv(report))
    return json_path, csv_path
