"""Who may post `POST /v1/receipts/accepted`: a bearer token or a signed body.

A request that carries the signature headers is judged by its signature alone when
`WEBHOOK_INTAKE_HMAC_SECRETS` are configured (webhook.signature_auth, the callbacks' scheme with
separate secrets); otherwise by `Authorization: Bearer <WEBHOOK_INTAKE_TOKEN>`. Either configured
method suffices; with neither configured nobody gets in (production does not start that way:
Settings.require). `IntakeVerifier.from_settings` reads both once, at start-up.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from aiohttp import web

from runtime.settings import Settings
from webhook.refusal import Endpoint, Reason, Refused
from webhook.signature_auth import SignatureVerifier


@dataclass(frozen=True, slots=True)
class IntakeVerifier:
    signature: SignatureVerifier
    token: str = field(default="", repr=False)

    @classmethod
    def from_settings(cls, settings: Settings) -> IntakeVerifier:
        w = settings.webhook
        return cls(
            signature=SignatureVerifier(Endpoint.INTAKE, tuple(w.intake_secret_list()), w.signature_window_seconds),
            token=w.intake_token.get_secret_value(),
        )

    def check(self, request: web.Request, body: bytes) -> None:
        """Pass, or raise Refused (401) naming what is missing or wrong."""
        if self.signature.configured and self.signature.signed(request):
            self.signature.check(request, body)
            return
        if not self.token and not self.signature.configured:
            raise Refused(401, Reason.NOT_CONFIGURED, "intake authentication is not configured")
        if "Authorization" not in request.headers:
            raise Refused(401, Reason.CREDENTIALS_MISSING, "missing bearer token or signature")
        if not self.token or not _bearer_matches(request.headers["Authorization"], self.token):
            raise Refused(401, Reason.TOKEN_MISMATCH, "wrong bearer token")


def _bearer_matches(given: str, token: str) -> bool:
    """Constant-time comparison of an `Authorization` header with `Bearer <token>`."""
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())
