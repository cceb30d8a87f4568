"""`POST /v1/receipts/accepted`: authentication (bearer or signature) and hostile bodies.

Every refusal is a clear 4xx, and neither the ledger nor Temporal changes: no table gains a row and
no workflow `payout-{receipt_id}` exists afterwards.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import httpx
import pytest

from payouts.models import payout_workflow_id
from runtime import devdefaults
from runtime.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign, signature_headers
from tests.stack import TEST_PHONE, Stack, sample_receipt
from tests.stack_checks import auth_failures, extra_webhook, state, with_webhook, workflow_exists

INTAKE_SECRET = "intake-signing-secret-for-tests-000000001"
AUTH = {"Authorization": f"Bearer {devdefaults.DEV_INTAKE_TOKEN}"}


def receipt(**overrides: Any) -> dict[str, Any]:
    """A valid intake body; a field given as _DROP is left out."""
    body = sample_receipt(**{"receipt_id": f"SEC-{uuid.uuid4().hex[:10]}", **overrides})
    return {k: v for k, v in body.items() if v is not _DROP}


_DROP = object()


async def _post(
    http: httpx.AsyncClient, url: str, content: bytes, headers: dict[str, str], content_type: str = "application/json"
) -> httpx.Response:
    return await http.post(
        f"{url}/v1/receipts/accepted", content=content, headers={"Content-Type": content_type, **headers}
    )


async def _assert_refused_without_trace(stack: Stack, resp: httpx.Response, status: int, receipt_id: str) -> None:
    assert resp.status_code == status, resp.text
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.json()["error"]
    assert not await workflow_exists(stack.client, payout_workflow_id(receipt_id))


@pytest.mark.parametrize(
    ("name", "headers", "reason"),
    [
        ("no credentials", {}, "credentials_missing"),
        ("wrong token", {"Authorization": "Bearer not-the-intake-token"}, "token_mismatch"),
        ("token without scheme", {"Authorization": devdefaults.DEV_INTAKE_TOKEN}, "token_mismatch"),
        ("basic auth", {"Authorization": "Basic ZGV2OmRldg=="}, "token_mismatch"),
    ],
)
async def test_intake_without_valid_credentials_is_401_and_starts_nothing(
    shared_stack: Stack, name: str, headers: dict[str, str], reason: str
) -> None:
    stack = shared_stack
    body = receipt()
    before = await state(stack)
    counted = await auth_failures(stack.http, stack.internal_url, "intake", reason)

    resp = await _post(stack.http, stack.internal_url, json.dumps(body).encode(), headers)

    await _assert_refused_without_trace(stack, resp, 401, body["receipt_id"])
    assert await state(stack) == before
    assert await auth_failures(stack.http, stack.internal_url, "intake", reason) == counted + 1
    assert devdefaults.DEV_INTAKE_TOKEN not in (await stack.http.get(f"{stack.internal_url}/metrics")).text


async def test_intake_with_the_bearer_token_starts_the_payout(stack: Stack) -> None:
    body = receipt()
    resp = await _post(stack.http, stack.internal_url, json.dumps(body).encode(), AUTH)

    assert resp.status_code == 202, resp.text
    assert await workflow_exists(stack.client, payout_workflow_id(body["receipt_id"]))


async def test_signed_intake_is_accepted_and_a_bad_signature_is_not(stack: Stack) -> None:
    settings = with_webhook(stack.settings, env="production", intake_token="", intake_hmac_secrets=INTAKE_SECRET)
    async with extra_webhook(stack, settings) as urls:
        now = int(time.time())
        results: dict[str, tuple[int, str]] = {}
        for name, make in (
            ("signed", lambda raw: signature_headers([INTAKE_SECRET], raw)),
            ("wrong secret", lambda raw: signature_headers(["some-other-intake-secret-00000000000"], raw)),
            ("stale", lambda raw: {TIMESTAMP_HEADER: str(now - 600),
                                   SIGNATURE_HEADER: sign(INTAKE_SECRET, str(now - 600), raw)}),
            ("bearer where only signatures are configured", lambda raw: AUTH),
            ("nothing", lambda raw: {}),
        ):
            body = receipt()
            raw = json.dumps(body).encode()
            results[name] = ((await _post(stack.http, urls.internal, raw, make(raw))).status_code, body["receipt_id"])

    assert {name: status for name, (status, _) in results.items()} == {
        "signed": 202,
        "wrong secret": 401,
        "stale": 401,
        "bearer where only signatures are configured": 401,
        "nothing": 401,
    }
    for name, (status, receipt_id) in results.items():
        assert await workflow_exists(stack.client, payout_workflow_id(receipt_id)) == (status == 202), name


# ---- hostile bodies (authenticated, so the validator is what answers) ----------------------------

_JSON_CASES: list[tuple[str, dict[str, Any]]] = [
    ("missing receipt_id", {"receipt_id": _DROP}),
    ("missing amount", {"amount_kopecks": _DROP}),
    ("missing currency", {"currency": _DROP}),
    ("missing accepted_at", {"accepted_at": _DROP}),
    ("zero amount", {"amount_kopecks": 0}),
    ("negative amount", {"amount_kopecks": -2500}),
    ("float amount", {"amount_kopecks": 25.5}),
    ("integral float amount", {"amount_kopecks": 2500.0}),
    ("amount as string", {"amount_kopecks": "2500"}),
    ("amount as bool", {"amount_kopecks": True}),
    ("amount 10^9", {"amount_kopecks": 10**9}),
    ("amount 10^30", {"amount_kopecks": 10**30}),
    ("unknown currency", {"currency": "USD"}),
    ("lower-case currency", {"currency": "uah"}),
    ("phone too short", {"msisdn": "12345"}),
    ("phone of another country", {"msisdn": "+1 202 555 0100"}),
    ("phone with letters", {"msisdn": "380-00-ABC-4567"}),
    ("phone one digit short", {"msisdn": "38000123456"}),
    ("phone empty", {"msisdn": ""}),
    ("phone as number", {"msisdn": 380001234567}),
    ("phone and token", {"msisdn_token": "gAAAAA" + "x" * 40}),
    ("no phone at all", {"msisdn": _DROP}),
    ("token that is not a token", {"msisdn": _DROP, "msisdn_token": "not-a-fernet-token-at-all"}),
    ("zero telegram id", {"telegram_id": 0}),
    ("negative telegram id", {"telegram_id": -7}),
    ("naive timestamp", {"accepted_at": "2026-11-27T10:00:00"}),
    ("not a timestamp", {"accepted_at": "yesterday"}),
    ("timestamp as a number", {"accepted_at": 1764237600}),
    ("timestamp as a string of digits", {"accepted_at": "1764237600"}),
    ("date without a time", {"accepted_at": "2026-11-27"}),
    ("time zone as a name", {"accepted_at": "2026-11-27T10:00:00 Europe/Kyiv"}),
    ("SQL in receipt id", {"receipt_id": "R-1'; DROP TABLE payouts;--"}),
    ("receipt id too long", {"receipt_id": "R" * 65}),
    ("markup in payee id", {"payee_id": "<script>alert(1)</script>"}),
    ("unknown field", {"admin": True}),
    ("field named by a lone surrogate", {"\ud800": True}),
    ("payee id with a lone surrogate", {"payee_id": "P-\ud800"}),
    ("unknown language", {"language": "ru"}),
]


@pytest.mark.parametrize(("name", "overrides"), _JSON_CASES, ids=[c[0] for c in _JSON_CASES])
async def test_invalid_receipts_are_422_and_start_nothing(
    shared_stack: Stack, name: str, overrides: dict[str, Any]
) -> None:
    stack = shared_stack
    body = receipt(**overrides)
    before = await state(stack)

    resp = await _post(stack.http, stack.internal_url, json.dumps(body).encode(), AUTH)

    receipt_id = body.get("receipt_id")
    await _assert_refused_without_trace(stack, resp, 422, receipt_id if isinstance(receipt_id, str) else "none")
    assert "fields" in resp.json()
    assert TEST_PHONE not in resp.text and "380-00-ABC-4567" not in resp.text
    assert await state(stack) == before


_RAW_CASES: list[tuple[str, bytes, str, int]] = [
    ("not JSON", b"receipt_id=R-1&amount=1", "application/json", 400),
    ("truncated JSON", b'{"receipt_id": "R-1", "amount_kopecks": 25', "application/json", 400),
    ("JSON array", b'[{"receipt_id": "R-1"}]', "application/json", 400),
    ("JSON null", b"null", "application/json", 400),
    ("invalid UTF-8", b'{"receipt_id": "\xff\xfe"}', "application/json", 400),
    ("UTF-16 JSON", json.dumps({"receipt_id": "R-1"}).encode("utf-16"), "application/json", 400),
    ("UTF-32 JSON", json.dumps({"receipt_id": "R-1"}).encode("utf-32"), "application/json", 400),
    ("UTF-8 with a byte-order mark", json.dumps({"receipt_id": "R-1"}).encode("utf-8-sig"), "application/json", 400),
    ("absurd nesting", b"[" * 60_000, "application/json", 400),
    ("NaN amount", b'{"amount_kopecks": NaN}', "application/json", 422),
    ("huge integer literal", b'{"amount_kopecks": ' + b"9" * 5000 + b"}", "application/json", 400),
    ("form content type", b'{"receipt_id": "R-1"}', "application/x-www-form-urlencoded", 415),
    ("XML content type", b"<receipt/>", "application/xml", 415),
    ("text content type", b'{"receipt_id": "R-1"}', "text/plain", 415),
    ("10 MB body", b'{"pad": "' + b"x" * (10 * 1024 * 1024) + b'"}', "application/json", 413),
]


@pytest.mark.parametrize(("name", "raw", "content_type", "status"), _RAW_CASES, ids=[c[0] for c in _RAW_CASES])
async def test_malformed_bodies_get_a_clear_4xx_and_change_nothing(
    shared_stack: Stack, name: str, raw: bytes, content_type: str, status: int
) -> None:
    stack = shared_stack
    before = await state(stack)

    resp = await _post(stack.http, stack.internal_url, raw, AUTH, content_type)

    assert resp.status_code == status, resp.text[:300]
    assert resp.json()["error"]  # 413 included: the body reader answers it, not aiohttp
    assert await state(stack) == before
    assert not await workflow_exists(stack.client, payout_workflow_id("R-1"))
