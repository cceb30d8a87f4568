"""Bill routes: which payout each Portmone bill belongs to, one row per bill (`bill_routes`).

The row is what a callback's single statement and a route writer both take (PostgreSQL: the unique key),
so neither misses the other without a second transaction or an advisory lock. Filled from the bills the
attempt log and the payouts already hold (the earliest attempt holding a bill owns it, as before).

Revision ID: 0006_bill_routes
Revises: 0005_confirmed_evidence
Create Date: 2026-12-07
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006_bill_routes"
down_revision: str | None = "0005_confirmed_evidence"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "bill_routes",
        sa.Column("bill_id", sa.String(128), primary_key=True),
        sa.Column("payout_id", sa.String(128), sa.ForeignKey("payouts.id"), nullable=True),
    )
    op.execute(
        "INSERT INTO bill_routes (bill_id, payout_id) "
        "SELECT a.bill_id, a.payout_id FROM bill_attempts a WHERE a.bill_id IS NOT NULL "
        "AND a.id = (SELECT min(b.id) FROM bill_attempts b WHERE b.bill_id = a.bill_id)"
    )
    op.execute(
        "INSERT INTO bill_routes (bill_id, payout_id) SELECT p.bill_id, p.id FROM payouts p "
        "WHERE p.bill_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM bill_routes r WHERE r.bill_id = p.bill_id)"
    )
    op.execute(
        "INSERT INTO bill_routes (bill_id, payout_id) SELECT DISTINCT c.bill_id, NULL FROM callbacks c "
        "WHERE c.bill_id IS NOT NULL AND NOT EXISTS (SELECT 1 FROM bill_routes r WHERE r.bill_id = c.bill_id)"
    )


def downgrade() -> None:
    op.drop_table("bill_routes")
