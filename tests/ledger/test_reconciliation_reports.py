"""The reconciliation reports in the ledger: one per day, replaced when the day is reconciled again,
the latest found without naming a day; SQLite and PostgreSQL alike."""

from __future__ import annotations

from datetime import UTC, date, datetime

from ledger import Ledger


async def test_a_day_is_replaced_and_the_latest_is_found(ledger: Ledger) -> None:
    reports = ledger.reconciliation_reports
    assert await reports.get() is None
    day, earlier = date(2026, 3, 10), date(2026, 3, 9)
    cutoff = datetime(2026, 3, 10, 22, 0, tzinfo=UTC)
    await reports.save(report_day=day, cutoff=cutoff, findings=1, document='{"counts": {"a": 1}}', csv="bucket\na\n")
    await reports.save(report_day=earlier, cutoff=datetime(2026, 3, 9, 22, 0, tzinfo=UTC), findings=0,
                       document='{"counts": {}}', csv="bucket\n")
    await reports.save(report_day=day, cutoff=cutoff, findings=2, document='{"counts": {"a": 2}}',
                       csv="bucket\na\na\n")

    latest = await reports.get()
    assert latest is not None
    assert (latest.report_day, latest.cutoff, latest.findings, latest.counts(), latest.csv) == (
        day, cutoff, 2, {"a": 2}, "bucket\na\na\n"
    )
    older = await reports.get(earlier)
    assert older is not None and older.counts() == {} and older.written_at.tzinfo is not None
    assert await reports.get(date(2020, 1, 1)) is None
