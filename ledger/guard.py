"""The database-level guard on payout status changes, generated from `payouts.status.LEGAL_TRANSITIONS`.

The ledger API checks every transition itself; the trigger makes the database refuse an illegal
change even from a raw UPDATE (a hand-written fix in psql, a bug elsewhere). When the table of legal
transitions changes, add a revision that calls `create_statements` again (it replaces the guard).
"""

from __future__ import annotations

from collections.abc import Mapping, Set

from payouts.status import LEGAL_TRANSITIONS, PayoutStatus

GUARD_NAME = "payouts_status_guard"
MESSAGE = "illegal transition"

Transitions = Mapping[PayoutStatus, Set[PayoutStatus]]


def _quoted(values: Set[PayoutStatus]) -> str:
    return ", ".join(f"'{v.value}'" for v in sorted(values))


def _allowed_condition(transitions: Transitions, old: str, new: str) -> str:
    """A SQL boolean: true when (old, new) is in the table. Staying put is handled by the caller."""
    parts = [
        f"({old} = '{src.value}' AND {new} IN ({_quoted(dst)}))" for src, dst in sorted(transitions.items()) if dst
    ]
    return " OR ".join(parts) if parts else "1 = 0"


def sqlite_statements(transitions: Transitions = LEGAL_TRANSITIONS) -> list[str]:
    allowed = _allowed_condition(transitions, "OLD.status", "NEW.status")
    return [
        f"DROP TRIGGER IF EXISTS {GUARD_NAME}",
        f"CREATE TRIGGER {GUARD_NAME} BEFORE UPDATE OF status ON payouts FOR EACH ROW "
        f"WHEN NEW.status IS NOT OLD.status AND NOT ({allowed}) "
        f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END",
    ]


def postgresql_statements(transitions: Transitions = LEGAL_TRANSITIONS) -> list[str]:
    cases = "\n".join(
        f"      WHEN '{src.value}' THEN NEW.status IN ({_quoted(dst)})"
        if dst
        else f"      WHEN '{src.value}' THEN false"
        for src, dst in sorted(transitions.items())
    )
    function = f"""
CREATE OR REPLACE FUNCTION {GUARD_NAME}() RETURNS trigger LANGUAGE plpgsql AS $guard$
BEGIN
  IF NEW.status IS DISTINCT FROM OLD.status AND NOT (
    CASE OLD.status
{cases}
      ELSE false
    END
  ) THEN
    RAISE EXCEPTION '{MESSAGE}: % -> %', OLD.status, NEW.status
      USING ERRCODE = 'check_violation', TABLE = 'payouts', COLUMN = 'status';
  END IF;
  RETURN NEW;
END
$guard$"""
    return [
        function,
        f"DROP TRIGGER IF EXISTS {GUARD_NAME} ON payouts",
        f"CREATE TRIGGER {GUARD_NAME} BEFORE UPDATE OF status ON payouts FOR EACH ROW EXECUTE FUNCTION {GUARD_NAME}()",
    ]


def drop_statements(dialect: str) -> list[str]:
    if dialect == "postgresql":
        return [f"DROP TRIGGER IF EXISTS {GUARD_NAME} ON payouts", f"DROP FUNCTION IF EXISTS {GUARD_NAME}()"]
    return [f"DROP TRIGGER IF EXISTS {GUARD_NAME}"]


def create_statements(dialect: str, transitions: Transitions = LEGAL_TRANSITIONS) -> list[str]:
    if dialect == "postgresql":
        return postgresql_statements(transitions)
    if dialect == "sqlite":
        return sqlite_statements(transitions)
    raise ValueError(f"the ledger supports sqlite and postgresql, not {dialect}")
