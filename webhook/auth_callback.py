"""Who may post a Portmone callback: every configured mode must pass.

- source address: `WEBHOOK_CALLBACK_ALLOWED_CIDRS` (with trusted proxies, webhook.auth_network);
- mutual TLS: `WEBHOOK_TLS_CLIENT_FINGERPRINTS` (webhook.tls);
- signature: `WEBHOOK_CALLBACK_HMAC_SECRETS` (payouts.signing, over the raw body).

The first two are checked before the body is read, the signature after. With no mode configured
the endpoint refuses everything, except in dev mode (`PAYOUTS_ENV=dev`) where it is open; in
production the webhook does not even start that way (Settings.require).
"""

from __future__ import annotations

from aiohttp import web
from prometheus_client import Counter

from payouts import signing
from payouts.settings import Settings
from webhook.auth_failures import Endpoint, Reason, Refusal
from webhook.auth_network import check_source
from webhook.tls import check_client_certificate

# Which configured secret (by position, 0 = newest) verified a request: when an old one stays at
# zero, the senders have moved to the new one and it can be removed.
SIGNATURES_VERIFIED = Counter(
    "webhook_signatures_verified_total", "Requests whose signature verified, by configured secret position",
    ["endpoint", "secret"],
)
_SIGNATURE_REASONS = {
    signing.SignatureFailure.MISSING: Reason.SIGNATURE_MISSING,
    signing.SignatureFailure.MALFORMED: Reason.SIGNATURE_MALFORMED,
    signing.SignatureFailure.STALE: Reason.TIMESTAMP_OUTSIDE_WINDOW,
    signing.SignatureFailure.MISMATCH: Reason.SIGNATURE_MISMATCH,
}


def any_mode_configured(settings: Settings) -> bool:
    w = settings.webhook
    return bool(w.callback_secret_list() or w.allowed_networks() or w.client_fingerprints())


def check_peer(request: web.Request, settings: Settings) -> Refusal | None:
    """The checks that need no body: configured at all, source address, client certificate."""
    w = settings.webhook
    if not any_mode_configured(settings):
        if settings.is_dev:
            return None
        return Refusal(403, Reason.NOT_CONFIGURED, "callback authentication is not configured")
    refusal = check_source(request, w.allowed_networks(), w.trusted_proxy_networks())
    if refusal is not None:
        return refusal
    return check_client_certificate(request, w.client_fingerprints())


def check_signature(
    request: web.Request, body: bytes, secrets: list[str], window_seconds: int, endpoint: Endpoint
) -> Refusal | None:
    """None when no secrets are configured or the signature headers match the raw body."""
    if not secrets:
        return None
    result = signing.verify(
        timestamp=request.headers.get(signing.TIMESTAMP_HEADER),
        signature=request.headers.get(signing.SIGNATURE_HEADER),
        body=body,
        secrets=secrets,
        window_seconds=window_seconds,
    )
    if result.ok or result.failure is None:
        SIGNATURES_VERIFIED.labels(endpoint=endpoint.value, secret=str(result.secret_index)).inc()
        return None
    return Refusal(401, _SIGNATURE_REASONS[result.failure], result.message)


def check_callback_signature(request: web.Request, body: bytes, settings: Settings) -> Refusal | None:
    w = settings.webhook
    return check_signature(request, body, w.callback_secret_list(), w.signature_window_seconds, Endpoint.CALLBACK)
