"""Mutual TLS for real: a throwaway CA, the webhook on HTTPS (port 0) and httpx clients with and
without client certificates. Only an allowlisted certificate may post a callback."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from runtime.settings import ConfigError
from tests.callbacks import paid
from tests.stack import Stack
from tests.stack_checks import auth_failures, extra_webhook, with_webhook
from tests.webhook.certs import authority, issue, tls_client


def _colon_form(fingerprint: str) -> str:
    """How `openssl x509 -fingerprint -sha256` prints it: upper case, colons."""
    return ":".join(fingerprint[i : i + 2] for i in range(0, len(fingerprint), 2)).upper()


async def test_only_an_allowlisted_client_certificate_may_post_a_callback(stack: Stack, tmp_path: Path) -> None:
    ca = authority(tmp_path, "test-ca")
    server = issue(ca, tmp_path, "webhook", server=True)
    partner = issue(ca, tmp_path, "partner", server=False)
    stranger = issue(ca, tmp_path, "stranger", server=False)  # same CA, not on the list
    foreign = issue(authority(tmp_path, "foreign-ca"), tmp_path, "foreign", server=False)
    settings = with_webhook(
        stack.settings,
        env="production",
        callback_hmac_secrets="",  # mutual TLS is the only callback check here
        tls_cert_path=server.cert_path,
        tls_key_path=server.key_path,
        tls_client_ca_path=ca.cert_path,
        tls_client_fingerprints=_colon_form(partner.fingerprint),
    )
    statuses: dict[str, int] = {}
    async with extra_webhook(stack, settings) as urls:
        url = urls.public
        assert url.startswith("https://") and urls.internal.startswith("https://")
        for name, cert in (("MTLS-PARTNER", partner), ("MTLS-NO-CERT", None), ("MTLS-STRANGER", stranger)):
            async with tls_client(ca.cert_path, cert) as client:
                resp = await client.post(
                    f"{url}/portmone/callback", content=paid(name), headers={"Content-Type": "application/xml"}
                )
                statuses[name] = resp.status_code
                if resp.status_code == 403:
                    assert "certificate" in resp.json()["error"]
        async with tls_client(ca.cert_path, None) as client:
            health = await client.get(f"{urls.internal}/healthz")  # the listener does not demand a certificate
        async with tls_client(ca.cert_path, foreign) as client:
            with pytest.raises(httpx.TransportError):  # the TLS handshake refuses a certificate of another CA
                await client.post(f"{url}/portmone/callback", content=paid("MTLS-FOREIGN"),
                                  headers={"Content-Type": "application/xml"})
        async with httpx.AsyncClient(timeout=5, trust_env=False) as plain:
            with pytest.raises(httpx.TransportError):  # plain HTTP to the HTTPS listener goes nowhere
                await plain.post(url.replace("https://", "http://") + "/portmone/callback", content=paid("MTLS-PLAIN"),
                                 headers={"Content-Type": "application/xml"})

    assert statuses == {"MTLS-PARTNER": 202, "MTLS-NO-CERT": 403, "MTLS-STRANGER": 403}
    assert health.status_code == 200
    assert [c.bill_id for c in await stack.ledger.callbacks.unrouted()] == ["MTLS-PARTNER"]
    assert await auth_failures(stack.http, stack.internal_url, "callback", "client_cert_missing") >= 1
    assert await auth_failures(stack.http, stack.internal_url, "callback", "client_cert_not_allowed") >= 1


async def test_mutual_tls_and_a_signature_must_both_pass_when_both_are_configured(stack: Stack, tmp_path: Path) -> None:
    ca = authority(tmp_path, "test-ca")
    server = issue(ca, tmp_path, "webhook", server=True)
    partner = issue(ca, tmp_path, "partner", server=False)
    settings = with_webhook(
        stack.settings,
        tls_cert_path=server.cert_path,
        tls_key_path=server.key_path,
        tls_client_ca_path=ca.cert_path,
        tls_client_fingerprints=partner.fingerprint,
    )
    async with extra_webhook(stack, settings) as urls, tls_client(ca.cert_path, partner) as client:
        unsigned = await client.post(
            f"{urls.public}/portmone/callback", content=paid("BOTH-UNSIGNED"),
            headers={"Content-Type": "application/xml"},
        )
    assert unsigned.status_code == 401
    assert await stack.ledger.callbacks.unrouted() == []


def test_fingerprints_without_tls_files_are_a_config_error(stack: Stack, tmp_path: Path) -> None:
    settings = with_webhook(stack.settings, env="production", tls_client_fingerprints="ab" * 32)
    with pytest.raises(ConfigError) as err:
        settings.require("payouts webhook", ["webhook"])
    assert "WEBHOOK_TLS_CLIENT_CA_PATH" in str(err.value)
