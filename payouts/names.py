"""Names that cross a process boundary, each declared once.

The payout workflow's signal, query and updates (the webhook signals, the console and the tests send
updates, the runbook names them), and every activity by the name its worker registers it under:
activities are defined with these names, workflows call them by these names (workflows never import
activities), and `tests/workers/test_registrations.py` ties every call to a registration.
"""

from __future__ import annotations

from enum import StrEnum


class WorkflowName(StrEnum):
    """Workflow types, started and searched by name (nothing imports a workflow class to start it)."""

    PAYOUT = "ReceiptPayout"  # one per receipt, id `payout-{receipt_id}`
    RECONCILIATION = "ReconciliationWorkflow"
    ARCHIVE_RETENTION = "ArchiveRetentionWorkflow"


CALLBACK_SIGNAL = "portmone_callback"
STATUS_QUERY = "status"


class UpdateName(StrEnum):
    """An operator's decisions on a payout in manual review (`payouts ops retry|mark-paid|cancel`)."""

    RETRY = "retry"
    MARK_PAID = "mark_paid"
    CANCEL = "cancel"


class ActivityName(StrEnum):
    # the ledger (local activities of the payout workflow)
    RESERVE = "ledger.reserve"
    TRANSITION = "ledger.transition"
    ESCALATE = "ledger.escalate"
    UNDELIVERED_CALLBACKS = "ledger.undelivered_callbacks"
    LEDGER_STATE = "ledger.state"
    RECORD_OPERATOR_ACTION = "ledger.record_operator_action"
    # Portmone, the telecom API and the operators' chat
    CREATE_BILL = "portmone.create_bill"
    TOPUP = "telecom.topup"
    REMIND_OPERATORS = "notify.remind_operators"
    # scheduled maintenance
    RECONCILE = "reconcile.run"
    PRUNE_ARCHIVE = "archive.prune"
