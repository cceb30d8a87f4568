"""Alembic migrations of the ledger (run them with `ledger.migrate.upgrade`)."""
