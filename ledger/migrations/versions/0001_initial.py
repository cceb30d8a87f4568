"""Initial ledger schema: payouts, daily totals, bill attempts, callbacks, archive, operator actions,
status history, and the status-transition guard.

Revision ID: 0001_initial
Revises:
Create Date: 2025-11-27
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op

from ledger import guard

revision: str = "0001_initial"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

STATUSES = (
    "RECEIVED", "RESERVED", "BILL_REQUESTED", "AWAITING_CALLBACK", "RETRY_SCHEDULED",
    "MANUAL_REVIEW", "PAID", "FAILED", "CANCELLED", "REJECTED",
)  # fmt: skip
ATTEMPT_STATES = ("prepared", "answered", "not_sent", "unknown")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _ts(name: str, nullable: bool = False) -> sa.Column[Any]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _big_id() -> sa.Column[Any]:
    return sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True)


def upgrade() -> None:
    op.create_table(
        "payouts",
        sa.Column("id", sa.String(128), nullable=False),
        sa.Column("receipt_id", sa.String(128), nullable=False),
        sa.Column("fiscal_key", sa.String(256), nullable=True),
        sa.Column("user_key", sa.String(128), nullable=False),
        sa.Column("masked_msisdn", sa.String(32), nullable=False),
        sa.Column("telegram_id", sa.BigInteger(), nullable=False),
        sa.Column("amount_kopecks", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("payee_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(256), nullable=True),
        sa.Column("owner", sa.String(256), nullable=False),
        sa.Column("business_day", sa.Date(), nullable=False),
        sa.Column("bill_id", sa.String(128), nullable=True),
        sa.Column("portmone_status", sa.String(64), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_description", sa.Text(), nullable=True),
        _ts("created_at"),
        _ts("updated_at"),
        sa.Column("row_version", sa.Integer(), nullable=False, server_default=sa.text("1")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payouts")),
        sa.UniqueConstraint("receipt_id", name=op.f("uq_payouts_receipt_id")),
        sa.UniqueConstraint("fiscal_key", name=op.f("uq_payouts_fiscal_key")),
        sa.UniqueConstraint("bill_id", name=op.f("uq_payouts_bill_id")),
        sa.CheckConstraint("amount_kopecks > 0", name=op.f("ck_payouts_amount_positive")),
        sa.CheckConstraint(_in("status", STATUSES), name=op.f("ck_payouts_status_known")),
    )
    op.create_index(op.f("ix_payouts_user_key_business_day"), "payouts", ["user_key", "business_day"])
    op.create_index(op.f("ix_payouts_business_day_status"), "payouts", ["business_day", "status"])
    op.create_index(op.f("ix_payouts_status"), "payouts", ["status"])

    op.create_table(
        "daily_totals",
        sa.Column("business_day", sa.Date(), nullable=False),
        sa.Column("reserved_kopecks", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
        sa.Column("reserved_count", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.PrimaryKeyConstraint("business_day", name=op.f("pk_daily_totals")),
    )

    op.create_table(
        "bill_attempts",
        _big_id(),
        sa.Column("payout_id", sa.String(128), nullable=False),
        sa.Column("round_no", sa.Integer(), nullable=False),
        sa.Column("attempt_no", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("bill_id", sa.String(128), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=True),
        _ts("prepared_at"),
        _ts("finished_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_bill_attempts")),
        sa.ForeignKeyConstraint(["payout_id"], ["payouts.id"], name=op.f("fk_bill_attempts_payout_id_payouts")),
        sa.UniqueConstraint("payout_id", "attempt_no", name=op.f("uq_bill_attempts_payout_id_attempt_no")),
        sa.CheckConstraint(_in("state", ATTEMPT_STATES), name=op.f("ck_bill_attempts_state_known")),
    )
    op.create_index(op.f("ix_bill_attempts_bill_id"), "bill_attempts", ["bill_id"])

    op.create_table(
        "callbacks",
        _big_id(),
        sa.Column("dedupe_key", sa.String(128), nullable=False),
        sa.Column("bill_id", sa.String(128), nullable=True),
        sa.Column("payout_id", sa.String(128), nullable=True),
        sa.Column("raw_body", sa.Text(), nullable=False),
        sa.Column("rsp_status", sa.String(32), nullable=True),
        sa.Column("bill_status", sa.String(64), nullable=True),
        sa.Column("error_code", sa.String(64), nullable=True),
        sa.Column("error_description", sa.Text(), nullable=True),
        _ts("received_at"),
        _ts("routed_at", nullable=True),
        _ts("processed_at", nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_callbacks")),
        sa.ForeignKeyConstraint(["payout_id"], ["payouts.id"], name=op.f("fk_callbacks_payout_id_payouts")),
        sa.UniqueConstraint("dedupe_key", name=op.f("uq_callbacks_dedupe_key")),
    )
    op.create_index(op.f("ix_callbacks_bill_id"), "callbacks", ["bill_id"])
    op.create_index(op.f("ix_callbacks_payout_id"), "callbacks", ["payout_id"])

    op.create_table(
        "exchange_archive",
        _big_id(),
        _ts("created_at"),
        sa.Column("method", sa.String(64), nullable=False),
        sa.Column("request_redacted", sa.JSON(), nullable=False),
        sa.Column("response_body", sa.Text(), nullable=True),
        sa.Column("http_status", sa.Integer(), nullable=True),
        sa.Column("outcome", sa.String(64), nullable=False),
        sa.Column("elapsed_ms", sa.Integer(), nullable=False),
        sa.Column("receipt_id", sa.String(128), nullable=True),
        sa.Column("payout_id", sa.String(128), nullable=True),
        sa.Column("bill_id", sa.String(128), nullable=True),
        sa.Column("telegram_id", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_exchange_archive")),
    )
    for column in ("created_at", "receipt_id", "payout_id", "bill_id"):
        op.create_index(op.f(f"ix_exchange_archive_{column}"), "exchange_archive", [column])

    op.create_table(
        "operator_actions",
        _big_id(),
        sa.Column("payout_id", sa.String(128), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("operator", sa.String(128), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("reference", sa.String(256), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("idempotency_key", sa.String(256), nullable=True),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_operator_actions")),
        sa.ForeignKeyConstraint(["payout_id"], ["payouts.id"], name=op.f("fk_operator_actions_payout_id_payouts")),
        sa.UniqueConstraint("idempotency_key", name=op.f("uq_operator_actions_idempotency_key")),
    )
    op.create_index(op.f("ix_operator_actions_payout_id"), "operator_actions", ["payout_id"])

    op.create_table(
        "status_history",
        _big_id(),
        sa.Column("payout_id", sa.String(128), nullable=False),
        sa.Column("from_status", sa.String(32), nullable=True),
        sa.Column("to_status", sa.String(32), nullable=False),
        sa.Column("reason", sa.String(256), nullable=True),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_status_history")),
        sa.ForeignKeyConstraint(["payout_id"], ["payouts.id"], name=op.f("fk_status_history_payout_id_payouts")),
    )
    op.create_index(op.f("ix_status_history_payout_id"), "status_history", ["payout_id"])

    for statement in guard.create_statements(op.get_bind().dialect.name):
        op.execute(statement)


def downgrade() -> None:
    for statement in guard.drop_statements(op.get_bind().dialect.name):
        op.execute(statement)
    for table in (
        "status_history",
        "operator_actions",
        "exchange_archive",
        "callbacks",
        "bill_attempts",
        "daily_totals",
        "payouts",
    ):
        op.drop_table(table)
