"""Refusing a request that failed authentication: a short JSON reason, a metric, a log line.

Metric labels come from fixed vocabularies (the endpoint and `Reason`), never from the request:
no secret, token, signature, IP address or certificate ever becomes a label or a log argument.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from enum import StrEnum

from aiohttp import web
from prometheus_client import Counter

from webhook.errors import error

AUTH_FAILURES = Counter(
    "webhook_auth_failures_total", "Requests refused by authentication, by endpoint and reason", ["endpoint", "reason"]
)
_log = logging.getLogger("payouts.webhook.auth")


class Endpoint(StrEnum):
    CALLBACK = "callback"
    INTAKE = "intake"
    CODEC = "codec"


class Reason(StrEnum):
    SIGNATURE_MISSING = "signature_missing"
    SIGNATURE_MALFORMED = "signature_malformed"
    TIMESTAMP_OUTSIDE_WINDOW = "timestamp_outside_window"
    SIGNATURE_MISMATCH = "signature_mismatch"
    IP_NOT_ALLOWED = "ip_not_allowed"
    FORWARDED_FOR_INVALID = "forwarded_for_invalid"
    CLIENT_CERT_MISSING = "client_cert_missing"
    CLIENT_CERT_NOT_ALLOWED = "client_cert_not_allowed"
    CREDENTIALS_MISSING = "credentials_missing"
    TOKEN_MISMATCH = "token_mismatch"  # noqa: S105 - a reason label, not a token
    NOT_CONFIGURED = "not_configured"
    ORIGIN_NOT_ALLOWED = "origin_not_allowed"
    NAMESPACE_NOT_SERVED = "namespace_not_served"


@dataclass(frozen=True, slots=True)
class Refusal:
    status: int  # 401: who you are is not proven; 403: proven or not, you may not
    reason: Reason
    message: str


def refuse(endpoint: Endpoint, refusal: Refusal, headers: dict[str, str] | None = None) -> web.Response:
    AUTH_FAILURES.labels(endpoint=endpoint.value, reason=refusal.reason.value).inc()
    _log.warning("%s request refused: %s", endpoint.value, refusal.reason.value)
    response = error(refusal.status, refusal.message)
    if refusal.status == 401:
        response.headers["WWW-Authenticate"] = "Bearer" if endpoint is not Endpoint.CALLBACK else "X-Payouts-Signature"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
