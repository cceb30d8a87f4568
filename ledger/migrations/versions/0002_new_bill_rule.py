"""The new-bill rule's evidence and callback redelivery: operator confirmations on bill attempts,
callback verdicts, when each stored callback was signalled to its payout; and the status guard
regenerated (RETRY_SCHEDULED → PAID: a late paid callback ends the back-off).

Revision ID: 0002_new_bill_rule
Revises: 0001_initial
Create Date: 2026-11-30
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from ledger import guard

revision: str = "0002_new_bill_rule"
down_revision: str | None = "0001_initial"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # batch mode: SQLite cannot add a foreign key to an existing table in place
    with op.batch_alter_table("bill_attempts") as batch:
        batch.add_column(
            sa.Column("confirmed_by", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True)
        )
        batch.create_foreign_key(
            op.f("fk_bill_attempts_confirmed_by_operator_actions"), "operator_actions", ["confirmed_by"], ["id"]
        )
    with op.batch_alter_table("callbacks") as batch:
        batch.add_column(sa.Column("verdict", sa.String(32), nullable=True))
        batch.add_column(sa.Column("signalled_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index(op.f("ix_callbacks_signalled_at"), ["signalled_at"])
    # Callbacks stored before this revision were signalled or left for reconciliation: not redelivered.
    op.execute("UPDATE callbacks SET signalled_at = received_at WHERE payout_id IS NOT NULL")
    # Their verdicts, from the words stored then (the error catalogue's transient codes as of this revision).
    op.execute(
        "UPDATE callbacks SET verdict = CASE"
        " WHEN rsp_status = 'fail' AND error_code IN ('1', '2', '3', '4') THEN 'declined_transient'"
        " WHEN rsp_status = 'fail' THEN 'declined_permanent'"
        " WHEN bill_status = 'PAYED' THEN 'paid'"
        " WHEN bill_status = 'CREATED' THEN 'pending'"
        " WHEN bill_status = 'REJECTED' THEN 'declined_permanent'"
        " WHEN bill_status = 'RETURN' THEN 'reversed'"
        " ELSE 'unknown' END"
    )
    for statement in guard.create_statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    with op.batch_alter_table("callbacks") as batch:
        batch.drop_index(op.f("ix_callbacks_signalled_at"))
        batch.drop_column("signalled_at")
        batch.drop_column("verdict")
    with op.batch_alter_table("bill_attempts") as batch:
        batch.drop_constraint(op.f("fk_bill_attempts_confirmed_by_operator_actions"), type_="foreignkey")
        batch.drop_column("confirmed_by")
