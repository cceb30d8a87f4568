"""`Ledger`: the one object the activities, the webhook and the console use. It composes the operations,
each group bound to the database: `ledger.payouts.transition(...)`, `ledger.attempts.begin(...)`,
`ledger.callbacks.store(...)`, `ledger.outbox.claim(...)`. Each operation is one transaction."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from ledger.archive import Archive
from ledger.attempts import Attempts
from ledger.callbacks import Callbacks
from ledger.db import Clock, Db, utc_now
from ledger.engine import make_engine
from ledger.operator_actions import OperatorActions
from ledger.outbox import Outbox
from ledger.payouts import Payouts
from ledger.reconciliation_reports import ReconciliationReports
from ledger.reports import Reports


class Ledger:
    """The durable record of payouts (SQLite or PostgreSQL through SQLAlchemy Core, async).

    Connection-level failures raise `LedgerUnavailable`; times are timezone-aware UTC; money is
    integer kopecks.
    """

    def __init__(self, engine: AsyncEngine, *, clock: Clock = utc_now) -> None:
        self._db = Db(engine, clock)
        self.payouts = Payouts(self._db)
        self.attempts = Attempts(self._db)
        self.callbacks = Callbacks(self._db)
        self.archive = Archive(self._db)
        self.operator_actions = OperatorActions(self._db)
        self.reports = Reports(self._db)
        self.outbox = Outbox(self._db)
        self.reconciliation_reports = ReconciliationReports(self._db)

    @classmethod
    def from_url(cls, url: str, *, clock: Clock = utc_now) -> Ledger:
        """A ledger with its own engine: WAL, busy timeout and foreign keys on SQLite (parent directory
        created), a bounded pre-pinged pool on PostgreSQL. Run `ledger.upgrade(url)` first."""
        return cls(make_engine(url), clock=clock)

    @property
    def engine(self) -> AsyncEngine:
        return self._db.engine

    async def aclose(self) -> None:
        await self._db.engine.dispose()

    async def ping(self) -> None:
        """Raises LedgerUnavailable when the database does not answer."""
        async with self._db.read() as conn:
            await conn.execute(sa.text("SELECT 1"))
