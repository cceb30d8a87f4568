"""`archive.prune`: delete Portmone exchange-archive rows older than the retention period, and the payout
events every channel has received that are as old."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from temporalio import activity

from ledger import Ledger
from payouts.models import RetentionOutput
from payouts.names import ActivityName
from runtime import metrics

MIN_RETENTION_DAYS = 90


class RetentionActivities:
    def __init__(self, ledger: Ledger, retention_days: int) -> None:
        if retention_days < MIN_RETENTION_DAYS:
            # Settings refuse this at start already (LEDGER_ARCHIVE_RETENTION_DAYS, ge=90); never prune evidence early.
            raise ValueError(f"archive retention must be at least {MIN_RETENTION_DAYS} days, not {retention_days}")
        self._ledger = ledger
        self._days = retention_days

    @activity.defn(name=ActivityName.PRUNE_ARCHIVE)
    async def prune(self) -> RetentionOutput:
        older_than = datetime.now(UTC) - timedelta(days=self._days)
        deleted = await self._ledger.archive.prune(older_than=older_than)
        metrics.record_archive_pruned(deleted)
        activity.logger.info("exchange archive: %d rows older than %s deleted", deleted, older_than.isoformat())
        events = await self._ledger.outbox.prune(older_than=older_than)
        activity.logger.info("outbox: %d delivered payout events older than %s deleted", events, older_than.isoformat())
        return RetentionOutput(retention_days=self._days, older_than=older_than, deleted=deleted)
