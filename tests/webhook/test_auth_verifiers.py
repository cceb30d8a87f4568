"""The request verifiers (webhook.callback_auth, webhook.intake_auth): built once from the settings,
each refusal reason answered the same way (status, JSON reason, challenge, metric), and a production
webhook that would check no callback never starts."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from runtime import devdefaults
from runtime.settings import ConfigError, WebhookSettings
from runtime.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, signature_headers
from tests.callbacks import paid
from tests.stack import Stack, sample_receipt
from tests.stack_checks import auth_failures, extra_webhook, with_webhook
from tests.webhook.certs import authority, issue, tls_client
from webhook.callback_auth import CallbackVerifier
from webhook.intake_auth import IntakeVerifier

CALLBACK_SECRET = "verifier-test-callback-secret-00000000001"
INTAKE_SECRET = "verifier-test-intake-secret-0000000000001"
INTAKE_TOKEN = "verifier-test-intake-token-000000000000001"
LATER_TOKEN = "a-token-set-after-the-start-000000000001"
ALLOWED = "192.0.2.10"  # inside WEBHOOK_CALLBACK_ALLOWED_CIDRS, named by the trusted proxy (the test client)
XML = {"Content-Type": "application/xml"}
JSON_TYPE = {"Content-Type": "application/json"}


def _stale(secret: str, body: bytes) -> dict[str, str]:
    then = str(int(time.time()) - 3600)
    return {TIMESTAMP_HEADER: then, SIGNATURE_HEADER: sign(secret, then, body)}


def _assert_refused(resp: httpx.Response, status: int, challenge: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    assert set(resp.json()) == {"error"} and resp.json()["error"]
    assert resp.headers.get("WWW-Authenticate") == (challenge if status == 401 else None)
    for secret in (CALLBACK_SECRET, INTAKE_SECRET, INTAKE_TOKEN):
        assert secret not in resp.text


async def test_every_check_configured_each_refuses_on_its_own_with_its_reason(stack: Stack, tmp_path: Path) -> None:
    ca = authority(tmp_path, "test-ca")
    server = issue(ca, tmp_path, "webhook", server=True)
    partner = issue(ca, tmp_path, "partner", server=False)
    stranger = issue(ca, tmp_path, "stranger", server=False)
    settings = with_webhook(
        stack.settings,
        env="production",
        callback_hmac_secrets=CALLBACK_SECRET,
        callback_allowed_cidrs="192.0.2.0/24",
        trusted_proxies="127.0.0.1/32",  # the test client plays the proxy and names the client
        tls_cert_path=server.cert_path,
        tls_key_path=server.key_path,
        tls_client_ca_path=ca.cert_path,
        tls_client_fingerprints=partner.fingerprint,
        intake_token=INTAKE_TOKEN,
        intake_hmac_secrets=INTAKE_SECRET,
    )
    # name -> (client certificate, X-Forwarded-For, signature headers for the body, status, reason)
    callback_cases: dict[str, tuple[Any, str, Any, int, str | None]] = {
        "VF-ALL-PASS": (partner, ALLOWED, lambda b: signature_headers([CALLBACK_SECRET], b), 202, None),
        "VF-ADDRESS": (partner, "198.51.100.7", lambda b: signature_headers([CALLBACK_SECRET], b), 403,
                       "ip_not_allowed"),
        "VF-FORWARDED": (partner, "not-an-address", lambda b: signature_headers([CALLBACK_SECRET], b), 403,
                         "forwarded_for_invalid"),
        "VF-NO-CERT": (None, ALLOWED, lambda b: signature_headers([CALLBACK_SECRET], b), 403, "client_cert_missing"),
        "VF-OTHER-CERT": (stranger, ALLOWED, lambda b: signature_headers([CALLBACK_SECRET], b), 403,
                          "client_cert_not_allowed"),
        "VF-UNSIGNED": (partner, ALLOWED, lambda b: {}, 401, "signature_missing"),
        "VF-MALFORMED": (partner, ALLOWED, lambda b: {TIMESTAMP_HEADER: "1", SIGNATURE_HEADER: "v1=zz"}, 401,
                         "signature_malformed"),
        "VF-STALE": (partner, ALLOWED, lambda b: _stale(CALLBACK_SECRET, b), 401, "timestamp_outside_window"),
        "VF-FORGED": (partner, ALLOWED, lambda b: signature_headers([INTAKE_SECRET], b), 401, "signature_mismatch"),
    }
    # name -> (headers for the body, status, reason); no client certificate: intake does not need one
    intake_cases: dict[str, tuple[Any, int, str | None]] = {
        "bearer": (lambda b: {"Authorization": f"Bearer {INTAKE_TOKEN}"}, 202, None),
        "signed": (lambda b: signature_headers([INTAKE_SECRET], b), 202, None),
        "nothing": (lambda b: {}, 401, "credentials_missing"),
        "wrong token": (lambda b: {"Authorization": "Bearer not-the-token"}, 401, "token_mismatch"),
        "callback secret": (lambda b: signature_headers([CALLBACK_SECRET], b), 401, "signature_mismatch"),
        "stale": (lambda b: _stale(INTAKE_SECRET, b), 401, "timestamp_outside_window"),
        "malformed": (lambda b: {TIMESTAMP_HEADER: "soon", SIGNATURE_HEADER: "v1=00"}, 401, "signature_malformed"),
        "signature without timestamp": (lambda b: {SIGNATURE_HEADER: sign(INTAKE_SECRET, "1", b)}, 401,
                                        "signature_missing"),
    }

    async with extra_webhook(stack, settings) as urls:
        for name, (cert, forwarded, signed, status, reason) in callback_cases.items():
            counted = await auth_failures(stack.http, stack.internal_url, "callback", reason or "")
            body = paid(name)
            async with tls_client(ca.cert_path, cert) as client:
                resp = await client.post(f"{urls.public}/portmone/callback", content=body,
                                         headers={**XML, "X-Forwarded-For": forwarded, **signed(body)})
            if reason is None:
                assert resp.status_code == status, (name, resp.text)
                continue
            _assert_refused(resp, status, "X-Payouts-Signature")
            assert await auth_failures(stack.http, stack.internal_url, "callback", reason) == counted + 1, name

        async with tls_client(ca.cert_path, None) as client:
            for name, (make, status, reason) in intake_cases.items():
                counted = await auth_failures(stack.http, stack.internal_url, "intake", reason or "")
                raw = json.dumps(sample_receipt()).encode()
                resp = await client.post(f"{urls.internal}/v1/receipts/accepted", content=raw,
                                         headers={**JSON_TYPE, **make(raw)})
                if reason is None:
                    assert resp.status_code == status, (name, resp.text)
                    continue
                _assert_refused(resp, status, "Bearer")
                assert await auth_failures(stack.http, stack.internal_url, "intake", reason) == counted + 1, name

    assert [c.bill_id for c in await stack.ledger.callbacks.unrouted()] == ["VF-ALL-PASS"]


async def test_intake_without_any_credential_configured_lets_nobody_in(stack: Stack) -> None:
    settings = with_webhook(stack.settings, intake_token="", intake_hmac_secrets="")  # dev: the webhook starts
    counted = await auth_failures(stack.http, stack.internal_url, "intake", "not_configured")
    raw = json.dumps(sample_receipt()).encode()
    async with extra_webhook(stack, settings) as urls:
        resp = await stack.http.post(f"{urls.internal}/v1/receipts/accepted", content=raw,
                                     headers={**JSON_TYPE, "Authorization": "Bearer anything"})

    _assert_refused(resp, 401, "Bearer")
    assert "not configured" in resp.json()["error"]
    assert await auth_failures(stack.http, stack.internal_url, "intake", "not_configured") == counted + 1


async def test_the_verifiers_are_built_once_a_request_reads_no_setting(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = with_webhook(stack.settings, callback_hmac_secrets=CALLBACK_SECRET, intake_token=INTAKE_TOKEN)
    async with extra_webhook(stack, settings) as urls:
        # After the start, the settings object says something else, and parsing any list fails loudly:
        # the webhook goes on with what it parsed at start-up.
        settings.webhook.callback_hmac_secrets = SecretStr(INTAKE_SECRET)
        settings.webhook.callback_allowed_cidrs = "192.0.2.0/24"
        settings.webhook.intake_token = SecretStr(LATER_TOKEN)
        for parser in ("callback_secret_list", "intake_secret_list", "allowed_networks", "trusted_proxy_networks",
                       "client_fingerprints"):
            monkeypatch.setattr(WebhookSettings, parser, _parsed_per_request)

        statuses: dict[str, int] = {}
        for name, secret in (("ONCE-STARTUP-SECRET", CALLBACK_SECRET), ("ONCE-LATER-SECRET", INTAKE_SECRET)):
            body = paid(name)
            resp = await stack.http.post(f"{urls.public}/portmone/callback", content=body,
                                         headers={**XML, **signature_headers([secret], body)})
            statuses[name] = resp.status_code
        for name, token in (("startup token", INTAKE_TOKEN), ("later token", LATER_TOKEN)):
            raw = json.dumps(sample_receipt()).encode()
            resp = await stack.http.post(f"{urls.internal}/v1/receipts/accepted", content=raw,
                                         headers={**JSON_TYPE, "Authorization": f"Bearer {token}"})
            statuses[name] = resp.status_code

    assert statuses == {"ONCE-STARTUP-SECRET": 202, "ONCE-LATER-SECRET": 401, "startup token": 202, "later token": 401}
    assert [c.bill_id for c in await stack.ledger.callbacks.unrouted()] == ["ONCE-STARTUP-SECRET"]


def _parsed_per_request(self: WebhookSettings) -> Any:
    raise AssertionError("a request re-read the webhook settings")


def test_a_verifier_is_immutable_and_its_repr_holds_no_secret(stack: Stack) -> None:
    settings = with_webhook(stack.settings, callback_hmac_secrets=CALLBACK_SECRET, intake_token=INTAKE_TOKEN,
                            intake_hmac_secrets=INTAKE_SECRET, callback_allowed_cidrs="192.0.2.0/24")
    callback, intake = CallbackVerifier.from_settings(settings), IntakeVerifier.from_settings(settings)

    with pytest.raises(dataclasses.FrozenInstanceError):
        callback.allowed = ()  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        intake.token = ""  # type: ignore[misc]
    assert [str(n) for n in callback.allowed] == ["192.0.2.0/24"]
    for text in (repr(callback), repr(intake)):
        for secret in (CALLBACK_SECRET, INTAKE_SECRET, INTAKE_TOKEN):
            assert secret not in text


async def test_a_production_webhook_without_any_callback_check_does_not_start(stack: Stack) -> None:
    unchecked = {"callback_hmac_secrets": "", "callback_allowed_cidrs": "", "tls_client_fingerprints": ""}
    production = with_webhook(stack.settings, env="production", **unchecked)

    with pytest.raises(ConfigError) as err:
        async with extra_webhook(stack, production):
            pass  # pragma: no cover - never reached

    message = str(err.value)
    assert "cannot start in production" in message and "no Portmone callback authentication" in message
    for name in ("WEBHOOK_CALLBACK_HMAC_SECRETS", "WEBHOOK_CALLBACK_ALLOWED_CIDRS", "WEBHOOK_TLS_CLIENT_FINGERPRINTS"):
        assert name in message
    assert devdefaults.DEV_INTAKE_TOKEN not in message

    # The same settings in dev mode start a webhook that believes every callback (payouts dev, tests).
    async with extra_webhook(stack, with_webhook(stack.settings, **unchecked)) as urls:
        resp = await stack.http.post(f"{urls.public}/portmone/callback", content=paid("DEV-UNCHECKED"), headers=XML)
    assert resp.status_code == 202


async def test_fingerprints_the_listener_could_never_see_do_not_start_even_in_dev(stack: Stack) -> None:
    settings = with_webhook(stack.settings, tls_client_fingerprints="ab" * 32)  # no HTTPS listener

    with pytest.raises(ConfigError) as err:
        async with extra_webhook(stack, settings):
            pass  # pragma: no cover - never reached

    assert "WEBHOOK_TLS_CLIENT_CA_PATH" in str(err.value)
