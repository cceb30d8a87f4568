"""workflows room (see docs/architecture.md)."""
