"""Refusing a request that failed authentication: one refusal type, one place that answers it.

Every check (webhook.callback_auth, webhook.intake_auth, the codec server) raises `Refused`; the
handler passes it to `refuse`, which writes the JSON answer, counts the metric and logs one line.
Metric labels and log arguments come from fixed vocabularies (the endpoint and `Reason`), never from
the request: no secret, token, signature, IP address or certificate ever becomes a label or a log
argument, and a refusal's message never repeats what was sent.
"""

from __future__ import annotations

import logging
from enum import StrEnum
from typing import Literal

from aiohttp import web

from runtime import metrics
from webhook.errors import error

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
    TOKEN_EXPIRED = "token_expired"  # noqa: S105 - a reason label, not a token
    TOKEN_INVALID = "token_invalid"  # noqa: S105 - not signed by the issuer's keys, not for us, not a JWT
    NOT_AN_OPERATOR = "not_an_operator"


# Every refusal's series exists at 0 from the start (CallbackAuthenticationFailures reads them by reason).
metrics.start_at_zero(metrics.AUTH_FAILURES, metrics.every(endpoint=Endpoint, reason=Reason))


class Refused(Exception):
    """A request refused by authentication.

    401: who you are is not proven (missing or wrong credentials); 403: proven or not, you may not
    (address, certificate, origin, an endpoint that is closed).
    """

    def __init__(self, status: Literal[401, 403], reason: Reason, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message


# What a client should send instead, on a 401.
_CHALLENGE = {Endpoint.CALLBACK: "X-Payouts-Signature", Endpoint.INTAKE: "Bearer", Endpoint.CODEC: "Bearer"}


def refuse(endpoint: Endpoint, refused: Refused, headers: dict[str, str] | None = None) -> web.Response:
    """The answer to a refused request, `{"error": message}`, counted and logged."""
    metrics.record_auth_failure(endpoint.value, refused.reason.value)
    _log.warning("%s request refused: %s", endpoint.value, refused.reason.value)
    response = error(refused.status, refused.message)
    if refused.status == 401:
        response.headers["WWW-Authenticate"] = _CHALLENGE[endpoint]
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response
