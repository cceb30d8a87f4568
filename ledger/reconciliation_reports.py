"""The daily reconciliation reports, kept in the ledger so every worker replica writes them to the
same place and every operator reads them there (`payouts ops report`).

One row per report day, replaced when the day is reconciled again. The report's text (JSON and CSV)
is stored as the reconciliation activity renders it, byte for byte.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from ledger.db import Operations
from ledger.records import to_record
from ledger.schema import UTCDateTime, metadata

reconciliation_reports = sa.Table(
    "reconciliation_reports",
    metadata,
    sa.Column("report_day", sa.Date(), primary_key=True),
    sa.Column("cutoff", UTCDateTime(), nullable=False),
    sa.Column("findings", sa.Integer(), nullable=False),
    sa.Column("document", sa.Text(), nullable=False),  # the JSON report
    sa.Column("csv", sa.Text(), nullable=False),
    sa.Column("written_at", UTCDateTime(), nullable=False),
)


@dataclass(frozen=True)
class StoredReport:
    report_day: date
    cutoff: datetime
    findings: int
    document: str
    csv: str
    written_at: datetime

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = json.loads(self.document)["counts"]
        return counts


class ReconciliationReports(Operations):
    async def save(self, *, report_day: date, cutoff: datetime, findings: int, document: str, csv: str) -> None:
        """Store the day's report, replacing an earlier one of the same day."""
        values = {
            "report_day": report_day, "cutoff": cutoff, "findings": findings, "document": document, "csv": csv,
            "written_at": self._db.now(),
        }
        insert = postgresql.insert if self._db.is_postgres else sqlite.insert
        statement = insert(reconciliation_reports).values(**values)
        statement = statement.on_conflict_do_update(
            index_elements=[reconciliation_reports.c.report_day],
            set_={k: statement.excluded[k] for k in values if k != "report_day"},
        )
        async with self._db.write() as conn:
            await conn.execute(statement)

    async def get(self, report_day: date | None = None) -> StoredReport | None:
        """The report of `report_day`, or the latest report when no day is given; None when there is none."""
        query = sa.select(reconciliation_reports)
        if report_day is None:
            query = query.order_by(reconciliation_reports.c.report_day.desc()).limit(1)
        else:
            query = query.where(reconciliation_reports.c.report_day == report_day)
        async with self._db.read() as conn:
            row = (await conn.execute(query)).first()
        return None if row is None else to_record(StoredReport, row)
