"""HTTPS on the webhook's own listener and the client certificate of a request.

With `WEBHOOK_TLS_CERT_PATH` and `WEBHOOK_TLS_KEY_PATH` the listener speaks TLS (1.2 or newer).
With `WEBHOOK_TLS_CLIENT_CA_PATH` too, clients may present a certificate issued by that CA (a
self-signed client certificate can be its own CA); presenting one is optional at the TLS layer so
intake and the codec server keep working without one, and the callback endpoint then insists on a
certificate whose SHA-256 fingerprint is in `WEBHOOK_TLS_CLIENT_FINGERPRINTS`.
"""

from __future__ import annotations

import hashlib
import ssl

from aiohttp import web

from payouts.settings import ConfigError, WebhookSettings
from webhook.auth_failures import Reason, Refusal


def server_ssl_context(settings: WebhookSettings) -> ssl.SSLContext | None:
    """The listener's TLS context, or None for plain HTTP."""
    if settings.tls_cert_path is None and settings.tls_key_path is None:
        if settings.client_fingerprints():
            raise ConfigError("WEBHOOK_TLS_CLIENT_FINGERPRINTS needs WEBHOOK_TLS_CERT_PATH and WEBHOOK_TLS_KEY_PATH")
        return None
    if settings.tls_cert_path is None or settings.tls_key_path is None:
        raise ConfigError("WEBHOOK_TLS_CERT_PATH and WEBHOOK_TLS_KEY_PATH go together")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(settings.tls_cert_path), str(settings.tls_key_path))
        if settings.tls_client_ca_path is not None:
            context.load_verify_locations(cafile=str(settings.tls_client_ca_path))
            context.verify_mode = ssl.CERT_OPTIONAL
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError(f"webhook TLS files cannot be loaded: {type(exc).__name__}: {exc}") from None
    if settings.client_fingerprints() and settings.tls_client_ca_path is None:
        raise ConfigError("WEBHOOK_TLS_CLIENT_FINGERPRINTS needs WEBHOOK_TLS_CLIENT_CA_PATH")
    return context


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


def check_client_certificate(request: web.Request, allowed: frozenset[str]) -> Refusal | None:
    """None when `allowed` is empty or the connection's client certificate is in it."""
    if not allowed:
        return None
    seen = peer_fingerprint(request)
    if seen is None:
        return Refusal(403, Reason.CLIENT_CERT_MISSING, "a client certificate is required")
    if seen not in allowed:
        return Refusal(403, Reason.CLIENT_CERT_NOT_ALLOWED, "client certificate not allowed")
    return None
