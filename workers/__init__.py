"""workers room (see docs/architecture.md)."""
