"""Operators' OIDC access tokens, as the Web UI passes them to the codec server
(`TEMPORAL_CODEC_PASS_ACCESS_TOKEN`): verified against the identity provider's published key set.

A token passes when it is a JWT signed with one of the issuer's keys (fetched from
`WEBHOOK_CODEC_OIDC_JWKS_URL`, cached, fetched again for a key id it does not know), with an accepted
asymmetric algorithm (never `none`, never HMAC), the configured issuer and audience, an expiry that
has not passed (30 s leeway for clocks), and the operator claim holding the operator value. Anything
else is refused with the one refusal type (webhook.refusal): 401 for a token that proves nothing
(expired, foreign, forged, malformed), 403 for a valid token of someone who is not an operator. When
the key set cannot be fetched, nothing can be verified: `KeysUnavailable` (the codec answers 503).
No token, claim value or key ever reaches a log line or a metric label.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import jwt

from runtime.settings import WebhookSettings
from webhook.refusal import Reason, Refused

_log = logging.getLogger("payouts.webhook.auth")
LEEWAY_SECONDS = 30
_KEYS_CACHE_SECONDS = 300
_FETCH_TIMEOUT_SECONDS = 5


class KeysUnavailable(Exception):
    """The issuer's key set could not be fetched: no token can be verified now."""


class OperatorTokens:
    def __init__(
        self,
        *,
        issuer: str,
        audience: str,
        jwks_url: str,
        claim: str,
        value: str,
        algorithms: list[str],
    ) -> None:
        self._issuer = issuer
        self._audience = audience
        self._claim = claim
        self._value = value
        self._algorithms = algorithms
        self._keys = jwt.PyJWKClient(
            jwks_url, cache_keys=True, lifespan=_KEYS_CACHE_SECONDS, timeout=_FETCH_TIMEOUT_SECONDS
        )

    @classmethod
    def from_settings(cls, w: WebhookSettings) -> OperatorTokens | None:
        if not w.codec_oidc_enabled():
            return None
        return cls(
            issuer=w.codec_oidc_issuer,
            audience=w.codec_oidc_audience,
            jwks_url=w.codec_oidc_jwks_url,
            claim=w.codec_oidc_operator_claim,
            value=w.codec_oidc_operator_value,
            algorithms=w.codec_oidc_algorithm_list(),
        )

    async def check(self, token: str) -> None:
        """Pass, or raise Refused (or KeysUnavailable)."""
        claims = await asyncio.to_thread(self._verified_claims, token)
        if not self._is_operator(claims.get(self._claim)):
            raise Refused(403, Reason.NOT_AN_OPERATOR, f"the token's {self._claim} claim does not name an operator")

    def _verified_claims(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("alg") not in self._algorithms:
                raise Refused(401, Reason.TOKEN_INVALID, "token not signed with an accepted algorithm")
            key = self._keys.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key,
                algorithms=self._algorithms,
                audience=self._audience,
                issuer=self._issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWKClientConnectionError as exc:
            _log.error("the identity provider's key set cannot be fetched: %s", type(exc).__name__)
            raise KeysUnavailable from None
        except jwt.ExpiredSignatureError:
            raise Refused(401, Reason.TOKEN_EXPIRED, "token expired") from None
        except (jwt.InvalidAudienceError, jwt.InvalidIssuerError):
            raise Refused(401, Reason.TOKEN_INVALID, "token not issued for this codec server") from None
        except jwt.PyJWKClientError:
            raise Refused(401, Reason.TOKEN_INVALID, "token not signed by the issuer's keys") from None
        except jwt.InvalidTokenError:
            raise Refused(401, Reason.TOKEN_INVALID, "token invalid") from None
        return claims

    def _is_operator(self, held: object) -> bool:
        if isinstance(held, str):
            return held == self._value
        if isinstance(held, list):
            return self._value in held
        return False
