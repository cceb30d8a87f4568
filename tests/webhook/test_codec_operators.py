"""The codec server admits operators by the OIDC access token the Web UI passes on
(`TEMPORAL_CODEC_PASS_ACCESS_TOKEN`): signed by the issuer's keys (a key set made here and served by a
local JWKS endpoint), for this audience, not expired, naming an operator. Everything else is refused
with a clear 401 or 403, counted by reason; the static token stays for the CLI."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import jwt
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from tests.stack import Stack, free_port
from tests.stack_checks import auth_failures, extra_webhook, with_webhook

ISSUER = "https://login.example.test/realms/operators"
AUDIENCE = "payouts-codec"
STATIC = "codec-token-for-the-cli-000000000001"
UI_ORIGIN = "http://127.0.0.1:8233"
KID = "test-key-1"


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@dataclass
class Provider:
    """A stand-in identity provider: its signing key, and the JWKS endpoint that publishes it."""

    key: rsa.RSAPrivateKey
    jwks_url: str
    fetches: int = 0

    def token(self, *, key: rsa.RSAPrivateKey | None = None, kid: str = KID, **overrides: Any) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "operator-1", "iat": now, "exp": now + 300,
                  "groups": ["payouts-operators", "staff"]}
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": kid})


@pytest.fixture(scope="module")
async def provider() -> AsyncIterator[Provider]:
    key = _key()
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    found = Provider(key=key, jwks_url="")

    async def jwks(_: web.Request) -> web.Response:
        found.fetches += 1
        return web.json_response({"keys": [{**jwk, "kid": KID, "use": "sig", "alg": "RS256"}]})

    app = web.Application()
    app.router.add_get("/jwks", jwks)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    found.jwks_url = f"http://127.0.0.1:{port}/jwks"
    try:
        yield found
    finally:
        await runner.cleanup()


def _plain() -> dict[str, Any]:
    b64 = base64.b64encode
    return {"metadata": {"encoding": b64(b"json/plain").decode()}, "data": b64(json.dumps("x").encode()).decode()}


def _unsigned(claims: dict[str, Any]) -> str:
    """A JWT with `alg: none` and no signature."""
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()
    return f"{part({'alg': 'none', 'typ': 'JWT', 'kid': KID})}.{part(claims)}."


async def _decode(http: httpx.AsyncClient, url: str, token: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json", "Origin": UI_ORIGIN, "X-Namespace": "default"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    return await http.post(f"{url}/codec/decode", json={"payloads": [_plain()]}, headers=headers)


def _oidc(stack: Stack, jwks_url: str) -> Any:
    return with_webhook(
        stack.settings, env="production", codec_token=STATIC, codec_cors_origins=UI_ORIGIN,
        codec_oidc_issuer=ISSUER, codec_oidc_audience=AUDIENCE, codec_oidc_jwks_url=jwks_url,
    )


async def test_only_a_valid_operator_token_decodes(stack: Stack, provider: Provider) -> None:
    now = int(time.time())
    good = provider.token()
    cases: dict[str, tuple[str | None, int, str | None]] = {
        "good token": (good, 200, None),
        "static token (the CLI)": (STATIC, 200, None),
        "expired": (provider.token(iat=now - 900, exp=now - 600), 401, "token_expired"),
        "wrong audience": (provider.token(aud="another-service"), 401, "token_invalid"),
        "wrong issuer": (provider.token(iss="https://elsewhere.example.test"), 401, "token_invalid"),
        "wrong key, same key id": (provider.token(key=_key()), 401, "token_invalid"),
        "wrong key, unknown key id": (provider.token(key=_key(), kid="not-published"), 401, "token_invalid"),
        "no operator claim": (provider.token(groups=None), 403, "not_an_operator"),
        "operator claim without the operators": (provider.token(groups=["staff"]), 403, "not_an_operator"),
        "alg none": (_unsigned(jwt.decode(good, options={"verify_signature": False})), 401, "token_invalid"),
        "HS256 with the public key as secret": (_hs256_with_public_key(provider), 401, "token_invalid"),
        "no expiry": (provider.token(exp=None), 401, "token_invalid"),
        "not a JWT": ("not-a-jwt", 401, "token_invalid"),
        "no token": (None, 401, "credentials_missing"),
    }
    async with extra_webhook(stack, _oidc(stack, provider.jwks_url)) as urls:
        for name, (token, status, reason) in cases.items():
            counted = await auth_failures(stack.http, urls.internal, "codec", reason) if reason else 0.0
            resp = await _decode(stack.http, urls.internal, token)
            assert resp.status_code == status, (name, resp.status_code, resp.text)
            assert resp.headers.get("Access-Control-Allow-Origin") == UI_ORIGIN, name  # the UI can read why
            if status == 200:
                assert json.loads(base64.b64decode(resp.json()["payloads"][0]["data"])) == "x", name
                continue
            assert resp.json()["error"], name
            assert await auth_failures(stack.http, urls.internal, "codec", reason or "") == counted + 1, name
            if status == 401:
                assert resp.headers["WWW-Authenticate"] == "Bearer", name
        scraped = (await stack.http.get(f"{urls.internal}/metrics")).text
    assert good not in scraped and STATIC not in scraped
    assert 1 <= provider.fetches <= 4  # the key set is cached, fetched again for an unknown key id


async def test_without_the_issuers_keys_nothing_is_admitted_but_the_static_token(stack: Stack) -> None:
    unreachable = f"http://127.0.0.1:{free_port()}/jwks"
    somebody = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "exp": int(time.time()) + 60,
                           "groups": ["payouts-operators"]}, _key(), algorithm="RS256", headers={"kid": KID})
    async with extra_webhook(stack, _oidc(stack, unreachable)) as urls:
        token = await _decode(stack.http, urls.internal, somebody)
        cli = await _decode(stack.http, urls.internal, STATIC)
    assert token.status_code == 503 and "identity provider" in token.json()["error"]
    assert cli.status_code == 200


def test_half_an_oidc_configuration_is_refused(stack: Stack) -> None:
    with pytest.raises(ValueError, match="WEBHOOK_CODEC_OIDC_AUDIENCE, WEBHOOK_CODEC_OIDC_JWKS_URL is not set"):
        with_webhook(stack.settings, codec_oidc_issuer=ISSUER)
    with pytest.raises(ValueError, match="HS256 not accepted"):
        with_webhook(stack.settings, codec_oidc_algorithms="RS256,HS256")


def _hs256_with_public_key(provider: Provider) -> str:
    """The old key-confusion attack: an HMAC token keyed with the issuer's public key."""
    public = provider.key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    now = int(time.time())
    claims = {"iss": ISSUER, "aud": AUDIENCE, "exp": now + 300, "groups": ["payouts-operators"]}
    header = {"alg": "HS256", "typ": "JWT", "kid": KID}

    def part(value: bytes) -> str:
        return base64.urlsafe_b64encode(value).rstrip(b"=").decode()

    signing = f"{part(json.dumps(header).encode())}.{part(json.dumps(claims).encode())}"
    signature = hmac.new(public, signing.encode(), hashlib.sha256).digest()
    return f"{signing}.{part(signature)}"
