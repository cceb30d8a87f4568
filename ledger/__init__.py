"""The ledger room: the durable record of payouts (SQLAlchemy Core, async; SQLite or PostgreSQL).

Use: `upgrade(url)` (Alembic upgrade head, blocking), then `Ledger.from_url(url)`; `await ledger.aclose()`
at shutdown. The operations hang off the ledger by concern: `ledger.payouts`, `ledger.attempts`,
`ledger.callbacks`, `ledger.archive`, `ledger.operator_actions`, `ledger.reports`, `ledger.outbox`; each
raises `LedgerUnavailable` when the database cannot serve it. This module is the room's one import root.
"""

from ledger.db import Operations
from ledger.errors import IllegalTransition, LedgerError, LedgerUnavailable, NewBillRefused, PayoutNotFound
from ledger.migrate import head_revision, upgrade
from ledger.records import (
    AttemptEnding,
    AttemptRecord,
    AttemptStart,
    AttemptState,
    CallbackRecord,
    Eligibility,
    Escalation,
    ExchangeEntry,
    ExchangeRecord,
    OpenBill,
    OperatorActionRecord,
    OutboxBacklog,
    OutboxClaim,
    OutboxDelivery,
    OutboxFailure,
    OutboxRelease,
    OutboxReport,
    PayoutFacts,
    PayoutRecord,
    ReserveRequest,
    ReserveResult,
    StatusChangeRecord,
    StatusMove,
    StoreCallbackResult,
)
from ledger.reports import ReconciliationSnapshot
from ledger.store import Ledger

__all__ = [
    "AttemptEnding",
    "AttemptRecord",
    "AttemptStart",
    "AttemptState",
    "CallbackRecord",
    "Eligibility",
    "Escalation",
    "ExchangeEntry",
    "ExchangeRecord",
    "IllegalTransition",
    "Ledger",
    "LedgerError",
    "LedgerUnavailable",
    "NewBillRefused",
    "OpenBill",
    "Operations",
    "OperatorActionRecord",
    "OutboxBacklog",
    "OutboxClaim",
    "OutboxDelivery",
    "OutboxFailure",
    "OutboxRelease",
    "OutboxReport",
    "PayoutFacts",
    "PayoutNotFound",
    "PayoutRecord",
    "ReconciliationSnapshot",
    "ReserveRequest",
    "ReserveResult",
    "StatusChangeRecord",
    "StatusMove",
    "StoreCallbackResult",
    "head_revision",
    "upgrade",
]
