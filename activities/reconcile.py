"""`reconcile.run`: compare the ledger, the workflows and the stored callbacks; store the day's report.

The report for day D judges everything the ledger held before the end of D (Kyiv time), against
the workflows' current states. It is stored in the ledger as JSON and CSV (replacing an earlier
report of D), where every operator reads it (`payouts ops report`), and its bucket counts are set as
gauges, so running it again for the same day over the same state changes nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, date, datetime, time, timedelta

from temporalio import activity
from temporalio.client import Client
from temporalio.service import RPCError, RPCStatusCode

from activities import reconcile_report
from activities.reconcile_buckets import MISSING, WorkflowState, build
from ledger import Ledger
from payouts import search_attributes as sa
from payouts.calendar import BUSINESS_TZ
from payouts.models import ReconcileOutput, ReconcileRequest
from payouts.names import ActivityName
from runtime import metrics

WorkflowLookup = Callable[[Sequence[str]], Awaitable[dict[str, WorkflowState]]]


def cutoff_for(day: date) -> datetime:
    """The end of `day` in Kyiv, in UTC: the report judges what the ledger held before it."""
    return datetime.combine(day + timedelta(days=1), time(0), tzinfo=BUSINESS_TZ).astimezone(UTC)


async def describe_workflows(client: Client, workflow_ids: Sequence[str], concurrency: int = 16) -> dict[
    str, WorkflowState
]:
    """Each workflow's execution status and `PayoutStatus` search attribute (MISSING when Temporal has none)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(workflow_id: str) -> tuple[str, WorkflowState]:
        async with gate:
            try:
                described = await client.get_workflow_handle(workflow_id).describe()
            except RPCError as exc:
                if exc.status == RPCStatusCode.NOT_FOUND:
                    return workflow_id, WorkflowState(MISSING, None)
                raise
        execution = described.status.name if described.status is not None else "UNKNOWN"
        return workflow_id, WorkflowState(execution, described.typed_search_attributes.get(sa.PAYOUT_STATUS))

    return dict(await asyncio.gather(*(one(wid) for wid in workflow_ids)))


class ReconcileActivities:
    def __init__(
        self,
        ledger: Ledger,
        *,
        callback_sla: timedelta,
        active_days: int,
        lookup: WorkflowLookup | None = None,
    ) -> None:
        self._ledger = ledger
        self._sla = callback_sla
        self._active = timedelta(days=active_days)
        self._lookup = lookup

    async def _states(self, workflow_ids: Sequence[str]) -> dict[str, WorkflowState]:
        if self._lookup is not None:
            return await self._lookup(workflow_ids)
        return await describe_workflows(activity.client(), workflow_ids)

    @activity.defn(name=ActivityName.RECONCILE)
    async def run(self, req: ReconcileRequest) -> ReconcileOutput:
        cutoff = cutoff_for(req.report_day)
        snapshot = await self._ledger.reports.reconciliation_snapshot(before=cutoff, active_since=cutoff - self._active)
        states = await self._states([p.id for p in snapshot.payouts])
        report = build(snapshot, states, cutoff=cutoff, sla=self._sla)
        counts = report.counts()
        await self._ledger.reconciliation_reports.save(
            report_day=req.report_day,
            cutoff=cutoff,
            findings=sum(counts.values()),
            document=reconcile_report.to_json(report, req.report_day),
            csv=reconcile_report.to_csv(report),
        )
        metrics.record_reconciliation(counts)
        activity.logger.info("reconciliation %s: %s", req.report_day, counts)
        return ReconcileOutput(report_day=req.report_day, cutoff=cutoff, counts=counts)
