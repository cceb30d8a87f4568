"""portmone room (see docs/architecture.md)."""
