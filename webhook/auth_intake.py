"""Who may post `POST /v1/receipts/accepted`: a bearer token or a signed body.

A request that carries the signature headers is judged by its signature
(`WEBHOOK_INTAKE_HMAC_SECRETS`, payouts.signing, same scheme as callbacks); otherwise by
`Authorization: Bearer <WEBHOOK_INTAKE_TOKEN>`. Either configured method suffices; with neither
configured nobody gets in.
"""

from __future__ import annotations

import hmac

from aiohttp import web

from payouts import signing
from payouts.settings import Settings
from webhook.auth_callback import check_signature
from webhook.auth_failures import Endpoint, Reason, Refusal


def bearer_matches(request: web.Request, expected: str) -> bool:
    """Constant-time comparison of `Authorization: Bearer <token>` with `expected` (never empty)."""
    given = request.headers.get("Authorization", "")
    return bool(expected) and hmac.compare_digest(given.encode(), f"Bearer {expected}".encode())


def check_intake(request: web.Request, body: bytes, settings: Settings) -> Refusal | None:
    w = settings.webhook
    secrets = w.intake_secret_list()
    if secrets and signing.SIGNATURE_HEADER in request.headers:
        return check_signature(request, body, secrets, w.signature_window_seconds, Endpoint.INTAKE)
    token = w.intake_token.get_secret_value()
    if not token and not secrets:
        return Refusal(401, Reason.NOT_CONFIGURED, "intake authentication is not configured")
    if "Authorization" not in request.headers:
        return Refusal(401, Reason.CREDENTIALS_MISSING, "missing bearer token or signature")
    if not bearer_matches(request, token):
        return Refusal(401, Reason.TOKEN_MISMATCH, "wrong bearer token")
    return None
