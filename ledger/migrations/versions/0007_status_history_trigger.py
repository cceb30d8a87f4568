"""The database writes the status history: a trigger on `payouts` (`ledger.history`).

Revision ID: 0007_status_history_trigger
Revises: 0006_bill_routes
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

from ledger import history

revision: str = "0007_status_history_trigger"
down_revision: str | None = "0006_bill_routes"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    for statement in history.create_statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in history.drop_statements(op.get_bind().dialect.name):
        op.execute(statement)
