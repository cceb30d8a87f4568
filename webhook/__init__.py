"""webhook room (see docs/architecture.md)."""
