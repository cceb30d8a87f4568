"""ReconciliationWorkflow: the daily comparison of ledger, workflows and callbacks (on a Schedule).

Started by the `payouts-reconciliation` Schedule (daily, overlap SKIP; `payouts schedules`), or by
hand. Without a day it reports on the previous business day (Kyiv) of its start, so a re-run on the
same day writes the same report again.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from payouts.calendar import business_day
    from payouts.models import ReconcileInput, ReconcileOutput, ReconcileRequest
    from payouts.names import ActivityName, WorkflowName


@workflow.defn(name=WorkflowName.RECONCILIATION)
class ReconciliationWorkflow:
    @workflow.run
    async def run(self, inp: ReconcileInput) -> ReconcileOutput:
        day = inp.report_day or business_day(workflow.now()) - timedelta(days=1)
        workflow.set_current_details(f"**Reconciliation** of {day.isoformat()}: comparing the ledger and workflows…")
        out: ReconcileOutput = await workflow.execute_activity(
            ActivityName.RECONCILE,
            ReconcileRequest(report_day=day),
            result_type=ReconcileOutput,
            start_to_close_timeout=timedelta(minutes=20),
            retry_policy=RetryPolicy(initial_interval=timedelta(seconds=10), maximum_attempts=5),
            summary=f"reconcile {day.isoformat()}: ledger vs workflows vs callbacks, store the report",
        )
        lines = [f"**Reconciliation** of {day.isoformat()} (cut-off {out.cutoff:%Y-%m-%d %H:%M} UTC): "
                 f"{out.total} finding(s)"]
        lines += [f"- `{bucket}`: {count}" for bucket, count in out.counts.items()]
        lines.append(f"Report stored in the ledger: `payouts ops report --day {day.isoformat()}`")
        workflow.set_current_details("\n".join(lines))
        return out
