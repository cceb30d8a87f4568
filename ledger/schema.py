"""The ledger tables (SQLAlchemy Core), one schema for SQLite and PostgreSQL.

The initial Alembic revision spells the same tables out; `tests/ledger/test_migrations.py`
compares the migrated database with this metadata so the two cannot drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect

from payouts.status import PayoutStatus

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)

STATUS_VALUES: tuple[str, ...] = tuple(s.value for s in PayoutStatus)
ATTEMPT_STATE_VALUES: tuple[str, ...] = ("prepared", "answered", "not_sent", "unknown")


class UTCDateTime(sa.TypeDecorator[datetime]):
    """Timezone-aware UTC in, timezone-aware UTC out, on both backends (SQLite keeps naive UTC text)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("the ledger stores timezone-aware datetimes only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def big_id() -> sa.types.TypeEngine[int]:
    """BIGINT identity on PostgreSQL; INTEGER on SQLite so it becomes the rowid alias (autoincrement)."""
    return sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


def _now_col(name: str, **kw: Any) -> sa.Column[datetime]:
    return sa.Column(name, UTCDateTime(), nullable=kw.pop("nullable", False), **kw)


payouts = sa.Table(
    "payouts",
    metadata,
    sa.Column("id", sa.String(128), primary_key=True),
    sa.Column("receipt_id", sa.String(128), nullable=False, unique=True),
    sa.Column("fiscal_key", sa.String(256), nullable=True, unique=True),
    # keyed HMAC of the phone number (hex); the phone itself is never stored
    sa.Column("user_key", sa.String(128), nullable=False),
    sa.Column("masked_msisdn", sa.String(32), nullable=False),
    sa.Column("telegram_id", sa.BigInteger(), nullable=False),
    # the user's language for their messages (`uk` or `en`)
    sa.Column("language", sa.String(2), nullable=False, server_default="uk"),
    # the user's Telegram message about this payout: "processing", later edited into the outcome
    sa.Column("telegram_message_id", sa.BigInteger(), nullable=True),
    sa.Column("amount_kopecks", sa.BigInteger(), nullable=False),
    sa.Column("currency", sa.String(3), nullable=False),
    sa.Column("payee_id", sa.String(64), nullable=True),
    sa.Column("status", sa.String(32), nullable=False),
    sa.Column("reason", sa.String(256), nullable=True),
    sa.Column("owner", sa.String(256), nullable=False),
    sa.Column("business_day", sa.Date(), nullable=False),
    sa.Column("bill_id", sa.String(128), nullable=True, unique=True),
    sa.Column("portmone_status", sa.String(64), nullable=True),
    sa.Column("error_code", sa.String(64), nullable=True),
    sa.Column("error_description", sa.Text(), nullable=True),
    _now_col("created_at"),
    _now_col("updated_at"),
    sa.Column("row_version", sa.Integer(), nullable=False, server_default=sa.text("1")),
    sa.CheckConstraint("amount_kopecks > 0", name="amount_positive"),
    sa.CheckConstraint(_in("status", STATUS_VALUES), name="status_known"),
    sa.Index(None, "user_key", "business_day"),
    sa.Index(None, "business_day", "status"),
    sa.Index(None, "status"),
)

daily_totals = sa.Table(
    "daily_totals",
    metadata,
    sa.Column("business_day", sa.Date(), primary_key=True),
    sa.Column("reserved_kopecks", sa.BigInteger(), nullable=False, server_default=sa.text("0")),
    sa.Column("reserved_count", sa.Integer(), nullable=False, server_default=sa.text("0")),
)

bill_attempts = sa.Table(
    "bill_attempts",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("payout_id", sa.String(128), sa.ForeignKey("payouts.id"), nullable=False),
    sa.Column("round_no", sa.Integer(), nullable=False),
    sa.Column("attempt_no", sa.Integer(), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("bill_id", sa.String(128), nullable=True),
    sa.Column("error_code", sa.String(64), nullable=True),
    sa.Column("detail", sa.Text(), nullable=True),
    _now_col("prepared_at"),
    _now_col("finished_at", nullable=True),
    # The operator action that confirmed this attempt's bill holds no money (never created, or
    # unpaid and closed at Portmone): the new-bill rule then lets a new bill follow it.
    sa.Column("confirmed_by", big_id(), sa.ForeignKey("operator_actions.id"), nullable=True),
    # What the ledger knew of the attempt when it was confirmed (`ledger.attempts.evidence_of`): the
    # confirmation stands only while that is still all there is.
    sa.Column("confirmed_evidence", sa.String(200), nullable=True),
    sa.UniqueConstraint("payout_id", "attempt_no"),
    sa.CheckConstraint(_in("state", ATTEMPT_STATE_VALUES), name="state_known"),
    sa.Index(None, "bill_id"),
)

# Which payout each Portmone bill belongs to: written once, by whoever first learns the bill (its answer,
# an echo, `set_bill_id`); the row is also what serializes "store a callback for bill B" with "record the
# route to B" (`ledger.callbacks.route_lock`). A callback for a bill nobody knows yet leaves a row
# without a payout, filled in when the route is learnt.
bill_routes = sa.Table(
    "bill_routes",
    metadata,
    sa.Column("bill_id", sa.String(128), primary_key=True),
    sa.Column("payout_id", sa.String(128), sa.ForeignKey("payouts.id"), nullable=True),
)

callbacks = sa.Table(
    "callbacks",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("dedupe_key", sa.String(128), nullable=False, unique=True),
    sa.Column("bill_id", sa.String(128), nullable=True, index=True),
    sa.Column("payout_id", sa.String(128), sa.ForeignKey("payouts.id"), nullable=True, index=True),
    sa.Column("raw_body", sa.Text(), nullable=False),
    sa.Column("rsp_status", sa.String(32), nullable=True),
    sa.Column("bill_status", sa.String(64), nullable=True),
    sa.Column("error_code", sa.String(64), nullable=True),
    sa.Column("error_description", sa.Text(), nullable=True),
    # What the callback means for the bill (payouts.verdicts.Verdict), converted by portmone/ at intake.
    sa.Column("verdict", sa.String(32), nullable=True),
    _now_col("received_at"),
    _now_col("routed_at", nullable=True),
    _now_col("processed_at", nullable=True),
    # When the payout's workflow was told (signalled); routed callbacks without it are redelivered.
    _now_col("signalled_at", nullable=True, index=True),
)

exchange_archive = sa.Table(
    "exchange_archive",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    _now_col("created_at", index=True),
    sa.Column("method", sa.String(64), nullable=False),
    sa.Column("request_redacted", sa.JSON(), nullable=False),
    sa.Column("response_body", sa.Text(), nullable=True),
    sa.Column("http_status", sa.Integer(), nullable=True),
    sa.Column("outcome", sa.String(64), nullable=False),
    sa.Column("elapsed_ms", sa.Integer(), nullable=False),
    sa.Column("receipt_id", sa.String(128), nullable=True, index=True),
    sa.Column("payout_id", sa.String(128), nullable=True, index=True),
    sa.Column("bill_id", sa.String(128), nullable=True, index=True),
    sa.Column("telegram_id", sa.BigInteger(), nullable=True),
)

operator_actions = sa.Table(
    "operator_actions",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("payout_id", sa.String(128), sa.ForeignKey("payouts.id"), nullable=False, index=True),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("operator", sa.String(128), nullable=False),
    sa.Column("reason", sa.Text(), nullable=True),
    sa.Column("reference", sa.String(256), nullable=True),
    sa.Column("details", sa.JSON(), nullable=True),
    sa.Column("idempotency_key", sa.String(256), nullable=True, unique=True),
    _now_col("created_at"),
)

status_history = sa.Table(
    "status_history",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("payout_id", sa.String(128), sa.ForeignKey("payouts.id"), nullable=False, index=True),
    sa.Column("from_status", sa.String(32), nullable=True),
    sa.Column("to_status", sa.String(32), nullable=False),
    sa.Column("reason", sa.String(256), nullable=True),
    _now_col("created_at"),
)

# The transactional outbox (payouts.events): one row per status change worth telling, written in the
# transaction of the change. Everything a channel needs is copied from the payout row; no phone number.
outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", big_id(), primary_key=True, autoincrement=True),
    sa.Column("event_id", sa.String(200), nullable=False, unique=True),
    sa.Column("payout_id", sa.String(128), sa.ForeignKey("payouts.id"), nullable=False),
    # the payout's events in order: 1, 2, …
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
    _now_col("occurred_at", index=True),
    sa.UniqueConstraint("payout_id", "seq"),
)

# The channels events go to (registered by the relay when it starts): each new event gets one
# delivery row per registered channel, in the transaction that writes it.
outbox_channels = sa.Table(
    "outbox_channels",
    metadata,
    sa.Column("name", sa.String(64), primary_key=True),
    _now_col("registered_at"),
)

# Delivery state per (event, channel), so a slow channel never holds up another. A claimed row's
# `next_attempt_at` is its lease: when the relay dies mid-delivery, the row is claimed again after it.
outbox_deliveries = sa.Table(
    "outbox_deliveries",
    metadata,
    sa.Column("outbox_id", big_id(), sa.ForeignKey("outbox.id"), primary_key=True),
    sa.Column("channel", sa.String(64), sa.ForeignKey("outbox_channels.name"), primary_key=True),
    # copied from the event: a payout's events reach each channel in order
    sa.Column("payout_id", sa.String(128), nullable=False),
    sa.Column("seq", sa.Integer(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),  # failed attempts
    _now_col("next_attempt_at"),
    _now_col("delivered_at", nullable=True),
    sa.Column("last_error", sa.String(500), nullable=True),
    sa.Index(None, "channel", "delivered_at", "next_attempt_at"),
    sa.Index(None, "channel", "payout_id", "seq"),
)
