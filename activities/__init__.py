"""activities room (see docs/architecture.md)."""
