"""ArchiveRetentionWorkflow: prune the Portmone exchange archive past its retention (on a Schedule)."""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from payouts.models import RetentionOutput
    from payouts.names import ActivityName, WorkflowName


@workflow.defn(name=WorkflowName.ARCHIVE_RETENTION)
class ArchiveRetentionWorkflow:
    @workflow.run
    async def run(self) -> RetentionOutput:
        out: RetentionOutput = await workflow.execute_activity(
            ActivityName.PRUNE_ARCHIVE,
            result_type=RetentionOutput,
            start_to_close_timeout=timedelta(minutes=30),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=30), maximum_attempts=5),
            summary="delete exchange-archive rows older than LEDGER_ARCHIVE_RETENTION_DAYS",
        )
        workflow.set_current_details(
            f"**Archive retention:** {out.deleted} exchange(s) older than {out.retention_days} days "
            f"({out.older_than:%Y-%m-%d %H:%M} UTC) deleted"
        )
        return out
