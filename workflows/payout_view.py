"""What the world sees of a running payout: the `status` view, search attributes, the Web UI's details.

Search attributes are upserted only where a status changes that someone searches for (waiting for
Portmone with a bill id, manual review with its reason, an ending); steps the ledger takes inside one
activity (RESERVED, BILL_REQUESTED) show in the view and the Web UI without a history event of their own.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from temporalio import workflow
from temporalio.common import SearchAttributeUpdate

from workflows.payout_state import PayoutState

with workflow.unsafe.imports_passed_through():
    from payouts import search_attributes as sa
    from payouts.status import PayoutStatus
    from payouts.workflow_text import current_details

_TIME = "%Y-%m-%d %H:%M UTC"


def show(state: PayoutState, status: PayoutStatus, *also: SearchAttributeUpdate[Any], searched: bool = True) -> None:
    """Move the view to `status` (a deadline of the step before is over); with `searched`, upsert the
    PayoutStatus attribute (and `also`) in one event."""
    state.progress.status = status
    state.deadline_text = ""
    if searched:
        workflow.upsert_search_attributes([sa.PAYOUT_STATUS.value_set(status.value), *also])
    refresh(state)


def refresh(state: PayoutState) -> None:
    workflow.set_current_details(current_details(state.view, state.deadline_text))


def set_deadline(state: PayoutState, what: str, after: timedelta) -> None:
    state.deadline_text = f"{what} {(workflow.now() + after).strftime(_TIME)}"
    refresh(state)
