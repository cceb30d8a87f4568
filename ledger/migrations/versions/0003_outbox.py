"""The transactional outbox of payout events (payouts.events): events, the channels they go to and
their delivery state per channel; each payout's language and the id of the user's Telegram message.

Revision ID: 0003_outbox
Revises: 0002_new_bill_rule
Create Date: 2026-12-01
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0003_outbox"
down_revision: str | None = "0002_new_bill_rule"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _big_int() -> sa.types.TypeEngine[int]:
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    # Plain ADD COLUMN (no batch copy of the table): the status guard's trigger on payouts stays.
    op.add_column("payouts", sa.Column("language", sa.String(2), nullable=False, server_default="uk"))
    op.add_column("payouts", sa.Column("telegram_message_id", sa.BigInteger(), nullable=True))

    op.create_table(
        "outbox",
        sa.Column("id", _big_int(), primary_key=True, autoincrement=True),
        sa.Column("event_id", sa.String(200), nullable=False),
        sa.Column("payout_id", sa.String(128), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("receipt_id", sa.String(128), nullable=False),
        sa.Column("telegram_id", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("amount_kopecks", sa.BigInteger(), nullable=False),
        sa.Column("language", sa.String(2), nullable=False),
        sa.Column("bill_id", sa.String(128), nullable=True),
        sa.Column("reason", sa.String(256), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_description", sa.Text(), nullable=True),
        _ts("occurred_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_outbox")),
        sa.ForeignKeyConstraint(["payout_id"], ["payouts.id"], name=op.f("fk_outbox_payout_id_payouts")),
        sa.UniqueConstraint("event_id", name=op.f("uq_outbox_event_id")),
        sa.UniqueConstraint("payout_id", "seq", name=op.f("uq_outbox_payout_id_seq")),
    )
    op.create_index(op.f("ix_outbox_occurred_at"), "outbox", ["occurred_at"])

    op.create_table(
        "outbox_channels",
        sa.Column("name", sa.String(64), nullable=False),
        _ts("registered_at"),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_outbox_channels")),
    )

    op.create_table(
        "outbox_deliveries",
        sa.Column("outbox_id", _big_int(), nullable=False),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("payout_id", sa.String(128), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        _ts("next_attempt_at"),
        _ts("delivered_at", nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.PrimaryKeyConstraint("outbox_id", "channel", name=op.f("pk_outbox_deliveries")),
        sa.ForeignKeyConstraint(
            ["outbox_id"], ["outbox.id"], name=op.f("fk_outbox_deliveries_outbox_id_outbox")
        ),
        sa.ForeignKeyConstraint(
            ["channel"], ["outbox_channels.name"], name=op.f("fk_outbox_deliveries_channel_outbox_channels")
        ),
    )
    op.create_index(
        op.f("ix_outbox_deliveries_channel_delivered_at_next_attempt_at"),
        "outbox_deliveries",
        ["channel", "delivered_at", "next_attempt_at"],
    )
    op.create_index(
        op.f("ix_outbox_deliveries_channel_payout_id_seq"), "outbox_deliveries", ["channel", "payout_id", "seq"]
    )


def downgrade() -> None:
    op.drop_table("outbox_deliveries")
    op.drop_table("outbox_channels")
    op.drop_table("outbox")
    # Plain DROP COLUMN (SQLite 3.35+), not a batch copy: the status guard's trigger on payouts stays.
    op.drop_column("payouts", "telegram_message_id")
    op.drop_column("payouts", "language")
