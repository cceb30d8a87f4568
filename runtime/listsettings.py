"""Comma-separated setting values: plain lists, CIDR lists and certificate fingerprints.

Environment variables hold these as `a,b,c` (friendlier than JSON); each parser raises ValueError
with a message that names the bad entry by position, never echoing a secret.
"""

from __future__ import annotations

import ipaddress
import re

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


def split_list(value: str) -> list[str]:
    """`" a, b ,,c"` -> `["a", "b", "c"]`."""
    return [item.strip() for item in value.split(",") if item.strip()]


def parse_networks(value: str) -> list[IPNetwork]:
    """`10.0.0.0/8, 192.0.2.7, 2001:db8::/32` -> networks (a bare address is a /32 or /128)."""
    networks: list[IPNetwork] = []
    for position, item in enumerate(split_list(value), start=1):
        try:
            networks.append(ipaddress.ip_network(item, strict=False))
        except ValueError:
            raise ValueError(f"entry {position} ({item[:50]!r}) is not an IP address or CIDR network") from None
    return networks


def normalize_fingerprint(value: str) -> str:
    """A SHA-256 certificate fingerprint as 64 lowercase hex digits (colons and case ignored)."""
    cleaned = value.strip().lower().replace(":", "")
    if not _FINGERPRINT.match(cleaned):
        raise ValueError("a certificate fingerprint is a SHA-256 digest: 64 hex digits, colons allowed")
    return cleaned


def parse_fingerprints(value: str) -> frozenset[str]:
    out: set[str] = set()
    for position, item in enumerate(split_list(value), start=1):
        try:
            out.add(normalize_fingerprint(item))
        except ValueError as exc:
            raise ValueError(f"entry {position}: {exc}") from None
    return frozenset(out)
