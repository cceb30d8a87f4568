"""Who may post a Portmone callback (`POST /portmone/callback`): every configured check must pass.

- source address: `WEBHOOK_CALLBACK_ALLOWED_CIDRS`, the client address read through
  `WEBHOOK_TRUSTED_PROXIES` (below);
- client certificate: `WEBHOOK_TLS_CLIENT_FINGERPRINTS`, on the webhook's mutual-TLS listener
  (webhook.tls);
- signature: `WEBHOOK_CALLBACK_HMAC_SECRETS` over the raw body (webhook.signature_auth).

`CallbackVerifier.from_settings` parses them once, at start-up; a request never reads settings.
At least one check is required outside dev: a production webhook without any is never built
(ConfigError, runtime.settings.callback_auth_problem); in dev (`PAYOUTS_ENV=dev`) it believes every
callback. The address and the certificate are checked before the body is read (`check_peer`), the
signature after (`check_body`). A failed check raises `Refused` (webhook.refusal).

The client address is the TCP peer, unless the peer is a trusted proxy: then the `X-Forwarded-For`
hops are walked from the right (the hop the proxy itself added) past every trusted proxy, and the
first untrusted hop is the client. An unparseable hop on that walk refuses the request rather than
guessing. A peer that is not a trusted proxy cannot move its address with the header: it is ignored.
"""

from __future__ import annotations

import hashlib
import ipaddress
import ssl
from collections.abc import Sequence
from dataclasses import dataclass

from aiohttp import web

from runtime.listsettings import IPNetwork
from runtime.settings import ConfigError, Settings, callback_auth_problem, client_certificate_problem
from webhook.refusal import Endpoint, Reason, Refused
from webhook.signature_auth import SignatureVerifier

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
FORWARDED_FOR = "X-Forwarded-For"
MAX_HOPS = 32


@dataclass(frozen=True, slots=True)
class CallbackVerifier:
    """The callback checks as configured at start-up; an empty allowlist or fingerprint set checks nothing."""

    signature: SignatureVerifier
    allowed: tuple[IPNetwork, ...] = ()
    trusted_proxies: tuple[IPNetwork, ...] = ()
    fingerprints: frozenset[str] = frozenset()

    @classmethod
    def from_settings(cls, settings: Settings) -> CallbackVerifier:
        w = settings.webhook
        problem = client_certificate_problem(w)
        if problem is not None:
            raise ConfigError(f"the webhook cannot start: {problem}")
        problem = callback_auth_problem(w)
        if problem is not None and not settings.is_dev:
            raise ConfigError(f"the webhook cannot start in production: {problem}")
        return cls(
            signature=SignatureVerifier(Endpoint.CALLBACK, tuple(w.callback_secret_list()), w.signature_window_seconds),
            allowed=tuple(w.allowed_networks()),
            trusted_proxies=tuple(w.trusted_proxy_networks()),
            fingerprints=w.client_fingerprints(),
        )

    def check_peer(self, request: web.Request) -> None:
        """The checks that need no body: the source address, then the client certificate."""
        self._check_source(request)
        self._check_certificate(request)

    def check_body(self, request: web.Request, body: bytes) -> None:
        """The signature over the raw body, when secrets are configured."""
        self.signature.check(request, body)

    def _check_source(self, request: web.Request) -> None:
        if not self.allowed:
            return
        try:
            address = client_address(request.remote, request.headers.getall(FORWARDED_FOR, []), self.trusted_proxies)
        except ForwardedForInvalid as exc:
            raise Refused(403, Reason.FORWARDED_FOR_INVALID, str(exc)) from None
        if address is None or not _within(address, self.allowed):
            raise Refused(403, Reason.IP_NOT_ALLOWED, "source address not allowed")

    def _check_certificate(self, request: web.Request) -> None:
        if not self.fingerprints:
            return
        seen = peer_fingerprint(request)
        if seen is None:
            raise Refused(403, Reason.CLIENT_CERT_MISSING, "a client certificate is required")
        if seen not in self.fingerprints:
            raise Refused(403, Reason.CLIENT_CERT_NOT_ALLOWED, "client certificate not allowed")


# ---- the client's address ------------------------------------------------------------------------


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


# ---- the client's certificate --------------------------------------------------------------------


def fingerprint(der: bytes) -> str:
    """SHA-256 of the DER certificate, 64 lowercase hex digits (`openssl x509 -fingerprint -sha256`)."""
    return hashlib.sha256(der).hexdigest()


def peer_fingerprint(request: web.Request) -> str | None:
    """The fingerprint of the verified client certificate of this connection, if any."""
    transport = request.transport
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if not isinstance(ssl_object, ssl.SSLObject | ssl.SSLSocket):
        return None
    der = ssl_object.getpeercert(binary_form=True)
    return fingerprint(der) if der else None
