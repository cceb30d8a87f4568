"""The request signature (runtime.signing's HMAC scheme) as the webhook checks it, for Portmone
callbacks and for intake alike.

A `SignatureVerifier` holds one endpoint's secrets, parsed once at start-up; `check` raises
`Refused` (401) naming why a request fails, and counts which secret verified it, by position
(0 = newest): when an old secret stays at zero, the senders have moved on and it can be removed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import web

from runtime import metrics, signing
from webhook.refusal import Endpoint, Reason, Refused

_REASONS = {
    signing.SignatureFailure.MISSING: Reason.SIGNATURE_MISSING,
    signing.SignatureFailure.MALFORMED: Reason.SIGNATURE_MALFORMED,
    signing.SignatureFailure.STALE: Reason.TIMESTAMP_OUTSIDE_WINDOW,
    signing.SignatureFailure.MISMATCH: Reason.SIGNATURE_MISMATCH,
}


@dataclass(frozen=True, slots=True)
class SignatureVerifier:
    """One endpoint's signing secrets (newest first) and the timestamp window."""

    endpoint: Endpoint
    secrets: tuple[str, ...] = field(repr=False)
    window_seconds: int = signing.DEFAULT_WINDOW_SECONDS

    @property
    def configured(self) -> bool:
        return bool(self.secrets)

    def signed(self, request: web.Request) -> bool:
        """Whether the request carries a signature at all (intake then judges it by that alone)."""
        return signing.SIGNATURE_HEADER in request.headers

    def check(self, request: web.Request, body: bytes) -> None:
        """Pass when no secret is configured or the signature headers match the raw body; else Refused."""
        if not self.secrets:
            return
        result = signing.verify(
            timestamp=request.headers.get(signing.TIMESTAMP_HEADER),
            signature=request.headers.get(signing.SIGNATURE_HEADER),
            body=body,
            secrets=self.secrets,
            window_seconds=self.window_seconds,
        )
        if result.failure is not None:
            raise Refused(401, _REASONS[result.failure], result.message)
        metrics.record_signature_verified(self.endpoint.value, str(result.secret_index))
