"""HTTPS on the webhook's own listener.

With `WEBHOOK_TLS_CERT_PATH` and `WEBHOOK_TLS_KEY_PATH` the listener speaks TLS (1.2 or newer).
With `WEBHOOK_TLS_CLIENT_CA_PATH` too, clients may present a certificate issued by that CA (a
self-signed client certificate can be its own CA); presenting one is optional at the TLS layer so
intake and the codec server keep working without one. Which certificates may post a callback is the
callback verifier's business (webhook.callback_auth, `WEBHOOK_TLS_CLIENT_FINGERPRINTS`).
"""

from __future__ import annotations

import ssl

from runtime.settings import ConfigError, WebhookSettings


def server_ssl_context(settings: WebhookSettings) -> ssl.SSLContext | None:
    """The listener's TLS context, or None for plain HTTP."""
    if settings.tls_cert_path is None and settings.tls_key_path is None:
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
    return context
