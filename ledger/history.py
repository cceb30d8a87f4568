"""The status history, written by the database: a trigger on `payouts` adds a `status_history` row for a
new payout and for every change of its status, with the row's reason and time.

Every status change is recorded however it was made (through the ledger, or a hand-written fix in psql),
and the ledger sends one statement fewer per change. Staying put writes no row. The time is the row's
own (`created_at` of a new row, `updated_at` of a change), which the ledger sets from its clock.
"""

from __future__ import annotations

TRIGGER_NAME = "payouts_status_history"

# The statements are put together from this module's constants only (hence the `noqa: S608`).
_COLUMNS = "payout_id, from_status, to_status, reason, created_at"
_ON_INSERT = "NEW.id, NULL, NEW.status, NEW.reason, NEW.created_at"
_ON_UPDATE = "NEW.id, OLD.status, NEW.status, NEW.reason, NEW.updated_at"


def create_statements(dialect: str) -> list[str]:
    """The triggers (and PostgreSQL's trigger function), replacing any earlier ones."""
    if dialect == "postgresql":
        function = f"""
CREATE OR REPLACE FUNCTION {TRIGGER_NAME}() RETURNS trigger LANGUAGE plpgsql AS $history$
BEGIN
  IF TG_OP = 'INSERT' THEN
    INSERT INTO status_history ({_COLUMNS}) VALUES ({_ON_INSERT});
  ELSE
    INSERT INTO status_history ({_COLUMNS}) VALUES ({_ON_UPDATE});
  END IF;
  RETURN NULL;
END
$history$"""  # noqa: S608
        return [
            function,
            *drop_statements(dialect)[:2],
            f"CREATE TRIGGER {TRIGGER_NAME}_insert AFTER INSERT ON payouts FOR EACH ROW "
            f"EXECUTE FUNCTION {TRIGGER_NAME}()",
            f"CREATE TRIGGER {TRIGGER_NAME}_update AFTER UPDATE OF status ON payouts FOR EACH ROW "
            f"WHEN (NEW.status IS DISTINCT FROM OLD.status) EXECUTE FUNCTION {TRIGGER_NAME}()",
        ]
    if dialect == "sqlite":
        return [
            *drop_statements(dialect),
            f"CREATE TRIGGER {TRIGGER_NAME}_insert AFTER INSERT ON payouts FOR EACH ROW "  # noqa: S608
            f"BEGIN INSERT INTO status_history ({_COLUMNS}) VALUES ({_ON_INSERT}); END",
            f"CREATE TRIGGER {TRIGGER_NAME}_update AFTER UPDATE OF status ON payouts FOR EACH ROW "  # noqa: S608
            f"WHEN NEW.status IS NOT OLD.status "
            f"BEGIN INSERT INTO status_history ({_COLUMNS}) VALUES ({_ON_UPDATE}); END",
        ]
    raise ValueError(f"the ledger supports sqlite and postgresql, not {dialect}")


def drop_statements(dialect: str) -> list[str]:
    if dialect == "postgresql":
        return [
            f"DROP TRIGGER IF EXISTS {TRIGGER_NAME}_insert ON payouts",
            f"DROP TRIGGER IF EXISTS {TRIGGER_NAME}_update ON payouts",
            f"DROP FUNCTION IF EXISTS {TRIGGER_NAME}()",
        ]
    return [f"DROP TRIGGER IF EXISTS {TRIGGER_NAME}_insert", f"DROP TRIGGER IF EXISTS {TRIGGER_NAME}_update"]
