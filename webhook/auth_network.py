"""Source address allowlist (CIDRs), with `X-Forwarded-For` believed only from trusted proxies.

The client address is the TCP peer, unless the peer is a configured trusted proxy: then the
`X-Forwarded-For` hops are walked from the right (the hop the proxy itself added) past every
trusted proxy, and the first untrusted hop is the client. An unparseable hop on that walk refuses
the request rather than guessing. A peer that is not a trusted proxy cannot move its address with
the header: it is ignored.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from aiohttp import web

from payouts.listsettings import IPNetwork
from webhook.auth_failures import Reason, Refusal

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
FORWARDED_FOR = "X-Forwarded-For"
MAX_HOPS = 32


class ForwardedForInvalid(ValueError):
    """A trusted proxy passed an `X-Forwarded-For` that names no address."""


def parse_address(text: str) -> IPAddress | None:
    """`192.0.2.1`, `192.0.2.1:443`, `2001:db8::1` or `[2001:db8::1]:443` -> address; None otherwise."""
    value = text.strip()
    if value.startswith("["):
        value = value[1:].partition("]")[0]
    elif value.count(":") == 1:
        value = value.partition(":")[0]
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def _within(address: IPAddress, networks: Sequence[IPNetwork]) -> bool:
    return any(address.version == net.version and address in net for net in networks)


def client_address(peer: str | None, forwarded_for: Sequence[str], trusted: Sequence[IPNetwork]) -> IPAddress | None:
    """The client's address as far as it can be trusted (None when the peer itself is unknown)."""
    current = parse_address(peer) if peer else None
    if current is None or not _within(current, trusted):
        return current
    hops = [hop for header in forwarded_for for hop in header.split(",") if hop.strip()]
    if len(hops) > MAX_HOPS:
        raise ForwardedForInvalid(f"more than {MAX_HOPS} {FORWARDED_FOR} hops")
    for hop in reversed(hops):
        address = parse_address(hop)
        if address is None:
            raise ForwardedForInvalid(f"{FORWARDED_FOR} holds something that is not an address")
        current = address
        if not _within(address, trusted):
            return address
    return current


def check_source(request: web.Request, allowed: Sequence[IPNetwork], trusted: Sequence[IPNetwork]) -> Refusal | None:
    """None when the client address is inside `allowed` (an empty `allowed` allows everyone)."""
    if not allowed:
        return None
    try:
        address = client_address(request.remote, request.headers.getall(FORWARDED_FOR, []), trusted)
    except ForwardedForInvalid as exc:
        return Refusal(403, Reason.FORWARDED_FOR_INVALID, str(exc))
    if address is None or not _within(address, allowed):
        return Refusal(403, Reason.IP_NOT_ALLOWED, "source address not allowed")
    return None
