"""Portmone callback authentication over HTTP: HMAC signatures (window, rotation, replay) and the
source-address allowlist with trusted proxies. A refused callback is never stored or signalled."""

from __future__ import annotations

import time

import httpx
import pytest

from payouts.status import PayoutStatus as S
from runtime import devdefaults
from runtime.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, signature_headers
from tests.callbacks import SETTLED, paid, rejected, waiting_payout
from tests.stack import Stack
from tests.stack_checks import WebhookUrls, auth_failures, extra_webhook, metric, state, with_webhook

SECRET = devdefaults.DEV_CALLBACK_HMAC_SECRET
OTHER_SECRET = "not-the-configured-callback-secret-0000"
NEW_SECRET = "rotation-new-callback-secret-000000000001"
OLD_SECRET = "rotation-old-callback-secret-000000000002"
RETIRED_SECRET = "rotation-retired-callback-secret-0000003"


def _headers(timestamp: int, signature: str) -> dict[str, str]:
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: signature}


async def _post(http: httpx.AsyncClient, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await http.post(
        f"{url}/portmone/callback", content=body, headers={"Content-Type": "application/xml", **headers}
    )


async def _secret_used(stack: Stack, index: int) -> float:
    return await metric(
        stack.http, stack.internal_url, "webhook_signatures_verified_total", endpoint="callback", secret=str(index)
    )


async def test_signed_callback_pays_once_and_its_replay_is_harmless(stack: Stack) -> None:
    handle, bill_id = await waiting_payout(stack)
    body = paid(bill_id)
    headers = signature_headers([SECRET], body)

    first = await _post(stack.http, stack.webhook_url, body, headers)
    assert first.status_code == 200, first.text
    view = await stack.wait_status(handle, SETTLED)
    assert view.status == S.PAID

    replayed = await _post(stack.http, stack.webhook_url, body, headers)  # byte for byte, inside the window
    assert replayed.status_code in (200, 202), replayed.text
    view = await stack.view(handle)
    assert view.callbacks_seen == 1
    history = [h.to_status for h in await stack.ledger.payouts.history(handle.id)]
    assert history.count(S.PAID) == 1
    assert len(await stack.ledger.callbacks.for_payout(handle.id)) == 1


async def test_unsigned_forged_expired_and_future_callbacks_are_refused_and_change_nothing(stack: Stack) -> None:
    handle, bill_id = await waiting_payout(stack)
    body = paid(bill_id)
    now = int(time.time())
    # Well outside the ±300 s window: the server reads its clock later than this test did (the exact
    # edges are tested with a fixed clock in test_signing.py).
    past, future = now - 360, now + 360
    cases: list[tuple[str, dict[str, str], bytes, str]] = [
        ("unsigned", {}, body, "signature_missing"),
        ("timestamp only", {TIMESTAMP_HEADER: str(now)}, body, "signature_missing"),
        ("forged with another secret", _headers(now, sign(OTHER_SECRET, str(now), body)), body, "signature_mismatch"),
        ("expired", _headers(past, sign(SECRET, str(past), body)), body, "timestamp_outside_window"),
        ("from the future", _headers(future, sign(SECRET, str(future), body)), body, "timestamp_outside_window"),
        ("body changed after signing", _headers(now, sign(SECRET, str(now), rejected(bill_id))), body,
         "signature_mismatch"),
        ("timestamp changed after signing", _headers(now + 1, sign(SECRET, str(now), body)), body,
         "signature_mismatch"),
        ("not hex", _headers(now, "v1=" + "z" * 64), body, "signature_malformed"),
        ("other scheme", _headers(now, "sha256=" + sign(SECRET, str(now), body)[3:]), body, "signature_malformed"),
        ("negative timestamp", _headers(-5, sign(SECRET, "-5", body)), body, "signature_malformed"),
        ("too many signatures", _headers(now, ",".join([sign(SECRET, str(now), body)] * 5)), body,
         "signature_malformed"),
    ]
    before = await state(stack, handle.id)
    for name, headers, sent, reason in cases:
        counted = await auth_failures(stack.http, stack.internal_url, "callback", reason)
        resp = await _post(stack.http, stack.webhook_url, sent, headers)

        assert resp.status_code == 401, (name, resp.status_code, resp.text)
        assert resp.json()["error"], name
        assert SECRET not in resp.text
        assert await auth_failures(stack.http, stack.internal_url, "callback", reason) == counted + 1, name
        assert await state(stack, handle.id) == before, f"{name} changed state"
    assert (await stack.view(handle)).status == S.AWAITING_CALLBACK

    # The same callback, properly signed, is accepted: the refusals above were about the signature.
    good = await _post(stack.http, stack.webhook_url, body, signature_headers([SECRET], body))
    assert good.status_code == 200
    assert (await stack.wait_status(handle, SETTLED)).status == S.PAID


async def test_rotation_accepts_every_configured_secret_and_nothing_else(stack: Stack) -> None:
    settings = with_webhook(stack.settings, callback_hmac_secrets=f"{NEW_SECRET},{OLD_SECRET}")
    used_before = [await _secret_used(stack, i) for i in (0, 1)]
    async with extra_webhook(stack, settings) as urls:
        outcomes = {}
        for bill_id, secrets in (
            ("ROT-NEW", [NEW_SECRET]),
            ("ROT-OLD", [OLD_SECRET]),
            ("ROT-BOTH", [RETIRED_SECRET, NEW_SECRET]),  # a sender mid-rotation sends two signatures
            ("ROT-RETIRED", [RETIRED_SECRET]),
        ):
            body = paid(bill_id)
            sent = await _post(stack.http, urls.public, body, signature_headers(secrets, body))
            outcomes[bill_id] = sent.status_code

    assert outcomes == {"ROT-NEW": 202, "ROT-OLD": 202, "ROT-BOTH": 202, "ROT-RETIRED": 401}
    # Which secret verified is counted by position, so the end of a rotation is visible.
    assert [await _secret_used(stack, i) for i in (0, 1)] == [used_before[0] + 2, used_before[1] + 1]
    stored = sorted(c.bill_id or "" for c in await stack.ledger.callbacks.unrouted())
    assert stored == ["ROT-BOTH", "ROT-NEW", "ROT-OLD"]


async def test_source_allowlist_honours_forwarded_for_only_from_trusted_proxies(stack: Stack) -> None:
    only_ip = {"callback_hmac_secrets": "", "callback_allowed_cidrs": "192.0.2.0/24, 2001:db8::/32"}
    direct = with_webhook(stack.settings, **only_ip)
    proxied = with_webhook(stack.settings, **only_ip, trusted_proxies="127.0.0.1/32, 10.0.0.0/8")
    results: dict[str, int] = {}

    async def post(urls: WebhookUrls, name: str, xff: str | None = None) -> None:
        headers = {"X-Forwarded-For": xff} if xff is not None else {}
        results[name] = (await _post(stack.http, urls.public, paid(name), headers)).status_code

    async with extra_webhook(stack, direct) as urls:
        await post(urls, "IP-PEER-NOT-ALLOWED")
        await post(urls, "IP-XFF-FROM-UNTRUSTED-PEER", "192.0.2.10")
    async with extra_webhook(stack, proxied) as urls:
        await post(urls, "IP-VIA-PROXY", "192.0.2.10")
        await post(urls, "IP-VIA-PROXY-V6", "2001:db8::7")
        await post(urls, "IP-SPOOFED-LEFTMOST", "192.0.2.10, 198.51.100.7")
        await post(urls, "IP-CHAIN-ENDS-ALLOWED", "198.51.100.7, 192.0.2.10")
        await post(urls, "IP-VIA-TWO-PROXIES", "192.0.2.10, 10.1.2.3")
        await post(urls, "IP-TWO-PROXIES-SPOOFED", "192.0.2.10, 198.51.100.7, 10.1.2.3")
        await post(urls, "IP-PROXY-ITSELF")
        await post(urls, "IP-XFF-GARBAGE", "not-an-address")
    async with extra_webhook(stack, with_webhook(stack.settings, callback_allowed_cidrs="127.0.0.0/8")) as urls:
        # Both modes configured (the stack's secret and the allowlist): both must pass.
        await post(urls, "IP-ALLOWED-BUT-UNSIGNED")
        body = paid("IP-ALLOWED-AND-SIGNED")
        resp = await _post(stack.http, urls.public, body, signature_headers([SECRET], body))
        results["IP-ALLOWED-AND-SIGNED"] = resp.status_code

    assert results == {
        "IP-PEER-NOT-ALLOWED": 403,
        "IP-XFF-FROM-UNTRUSTED-PEER": 403,
        "IP-VIA-PROXY": 202,
        "IP-VIA-PROXY-V6": 202,
        "IP-SPOOFED-LEFTMOST": 403,
        "IP-CHAIN-ENDS-ALLOWED": 202,
        "IP-VIA-TWO-PROXIES": 202,
        "IP-TWO-PROXIES-SPOOFED": 403,
        "IP-PROXY-ITSELF": 403,
        "IP-XFF-GARBAGE": 403,
        "IP-ALLOWED-BUT-UNSIGNED": 401,
        "IP-ALLOWED-AND-SIGNED": 202,
    }
    stored = sorted(c.bill_id or "" for c in await stack.ledger.callbacks.unrouted())
    assert stored == sorted(name for name, status in results.items() if status == 202)
    metrics = (await stack.http.get(f"{stack.internal_url}/metrics")).text
    assert await auth_failures(stack.http, stack.internal_url, "callback", "ip_not_allowed") >= 4
    assert await auth_failures(stack.http, stack.internal_url, "callback", "forwarded_for_invalid") >= 1
    for address in ("192.0.2.", "198.51.100.", "127.0.0.1", "2001:db8", SECRET):
        assert address not in metrics


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "multipart/form-data; boundary=x"])
async def test_a_signed_callback_of_the_wrong_content_type_is_refused(stack: Stack, content_type: str) -> None:
    before = await state(stack)
    resp = await stack.post_callback(paid("CT-1"), content_type=content_type)

    assert resp.status_code == 415
    assert await state(stack) == before
