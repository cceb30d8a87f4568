"""sandbox room (see docs/architecture.md)."""
