"""ledger room (see docs/architecture.md)."""
