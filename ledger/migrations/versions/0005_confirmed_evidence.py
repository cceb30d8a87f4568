"""A confirmation names the evidence it answered: `bill_attempts.confirmed_evidence`.

An operator's "no bill at Portmone" covers an attempt only while the ledger knows what it knew when the
operator looked (its state, its bill id, the callbacks stored for that bill); any later evidence voids it.

Revision ID: 0005_confirmed_evidence
Revises: 0004_reconciliation_reports
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_confirmed_evidence"
down_revision: str | None = "0004_reconciliation_reports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("bill_attempts") as batch:
        batch.add_column(sa.Column("confirmed_evidence", sa.String(200), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("bill_attempts") as batch:
        batch.drop_column("confirmed_evidence")
