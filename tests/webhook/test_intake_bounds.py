"""Intake accepts only what the ledger can hold, on SQLite and on PostgreSQL alike.

The ledger's `telegram_id` is a signed 64-bit BIGINT, its strings have column lengths, and PostgreSQL
refuses a NUL byte that SQLite would store. A body that passed intake but could not be reserved used
to be answered `202 new` and then vanish: the reserve activity failed until the workflow did, with no
ledger row for anyone to find. So every such body must be refused at the door (422, naming the field)
with nothing started and nothing stored, and the boundary values that are accepted must go all the
way through reserve to PAID on both databases.
"""

from __future__ import annotations

import json
import string
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.testing import WorkflowEnvironment

from payouts.models import payout_workflow_id
from payouts.status import PayoutStatus as S
from runtime import devdefaults
from runtime.settings import LedgerSettings
from tests.ledger.helpers import PgAdmin
from tests.stack import Stack, running_stack, sample_receipt
from tests.stack_checks import state, workflow_exists

SIGNED_64_MAX = 2**63 - 1  # the ledger's BIGINT columns, on both databases
AUTH = {"Authorization": f"Bearer {devdefaults.DEV_INTAKE_TOKEN}", "Content-Type": "application/json"}
BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
_DROP = object()
# Marks a JSON value spliced into the body as written (json.dumps would spell 1e30 as 1e+30).
_RAW = "raw"


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> PgAdmin | None:
    """None for the stack's own SQLite file; for PostgreSQL, the admin that makes a fresh database."""
    return request.getfixturevalue("pg_admin") if request.param == "postgres" else None


async def _ledger_settings(pg_admin: PgAdmin | None) -> LedgerSettings | None:
    if pg_admin is None:
        return None
    return LedgerSettings(url=await pg_admin.create_database())  # running_stack migrates it


@pytest.fixture(scope="module")
async def backend_stack(
    backend: PgAdmin | None, env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Stack]:
    """A stack without workers (nothing may start) on each ledger backend."""
    async with running_stack(
        env.client,
        tmp_path_factory.mktemp("stack"),
        read_timeout=1.0,
        workers=False,
        ledger_settings=await _ledger_settings(backend),
    ) as s:
        yield s


@pytest.fixture
async def paying_stack(backend: PgAdmin | None, env: WorkflowEnvironment, tmp_path: Path) -> AsyncIterator[Stack]:
    """A stack with workers on each ledger backend."""
    ledger = await _ledger_settings(backend)
    async with running_stack(env.client, tmp_path, read_timeout=1.0, ledger_settings=ledger) as s:
        yield s


def _body(overrides: dict[str, Any]) -> tuple[str, bytes]:
    """(receipt_id, raw JSON) of a valid receipt with overrides; `_DROP` leaves a field out, and a
    value `_raw("1e30")` is written into the JSON as is."""
    body = sample_receipt(f"BND-{uuid.uuid4().hex[:12]}")
    literals: dict[str, str] = {}
    for key, value in overrides.items():
        if value is _DROP:
            body.pop(key, None)
        elif isinstance(value, tuple) and value[0] == _RAW:
            marker = f"raw-literal-{uuid.uuid4().hex}"
            body[key] = marker
            literals[json.dumps(marker)] = value[1]
        else:
            body[key] = value
    text = json.dumps(body)
    for marker, literal in literals.items():
        text = text.replace(marker, literal)
    receipt_id = body.get("receipt_id")
    return (receipt_id if isinstance(receipt_id, str) else "none"), text.encode()


def _raw(literal: str) -> tuple[str, str]:
    return (_RAW, literal)


_C0_C1 = ["\x00", "\x01", "\t", "\n", "\r", "\x1b", "\x1f", "\x7f", "\x85", "\x9f"]

# (name, overrides, the field the answer must name)
_CASES: list[tuple[str, dict[str, Any], str]] = [
    # integers: the ledger's BIGINT is signed 64-bit
    ("telegram id 2^63", {"telegram_id": 2**63}, "telegram_id"),
    ("telegram id 2^64", {"telegram_id": 2**64}, "telegram_id"),
    ("telegram id 10^30 as a JSON integer", {"telegram_id": 10**30}, "telegram_id"),
    ("telegram id 1e30", {"telegram_id": _raw("1e30")}, "telegram_id"),
    ("telegram id 1E400 (infinity)", {"telegram_id": _raw("1E400")}, "telegram_id"),
    ("telegram id 9.3e18", {"telegram_id": _raw("9.3e18")}, "telegram_id"),
    ("telegram id 4242.0", {"telegram_id": _raw("4242.0")}, "telegram_id"),
    ("telegram id -2^63", {"telegram_id": -(2**63)}, "telegram_id"),
    ("telegram id as a string", {"telegram_id": str(SIGNED_64_MAX)}, "telegram_id"),
    ("telegram id as bool", {"telegram_id": True}, "telegram_id"),
    ("telegram id null", {"telegram_id": None}, "telegram_id"),
    ("amount 2^63", {"amount_kopecks": 2**63}, "amount_kopecks"),
    ("amount 1e30", {"amount_kopecks": _raw("1e30")}, "amount_kopecks"),
    ("amount -2^63-1", {"amount_kopecks": -(2**63) - 1}, "amount_kopecks"),
    # fiscal key: 1..128 visible ASCII characters (docs/security.md)
    *[(f"fiscal key with U+{ord(c):04X}", {"fiscal_key": f"FN1{c}FD2"}, "fiscal_key") for c in _C0_C1],
    ("fiscal key that is only NUL", {"fiscal_key": "\x00"}, "fiscal_key"),
    ("fiscal key with a space", {"fiscal_key": "FN1 FD2"}, "fiscal_key"),
    ("fiscal key with a leading space", {"fiscal_key": " FN1"}, "fiscal_key"),
    ("fiscal key in Cyrillic", {"fiscal_key": "ФН4000123456"}, "fiscal_key"),
    ("fiscal key with a zero-width space", {"fiscal_key": "FN1\u200bFD2"}, "fiscal_key"),
    ("fiscal key with a right-to-left override", {"fiscal_key": "FN1\u202eFD2"}, "fiscal_key"),
    ("fiscal key with an emoji", {"fiscal_key": "FN1\U0001f4b8"}, "fiscal_key"),
    ("fiscal key with a lone surrogate", {"fiscal_key": _raw('"FN1\\ud800"')}, "fiscal_key"),
    ("fiscal key of 129 characters", {"fiscal_key": "F" * 129}, "fiscal_key"),
    ("fiscal key of 10 000 characters", {"fiscal_key": "F" * 10_000}, "fiscal_key"),
    ("empty fiscal key", {"fiscal_key": ""}, "fiscal_key"),
    ("fiscal key as a number", {"fiscal_key": 4000123456}, "fiscal_key"),
    # the other strings
    ("receipt id with NUL", {"receipt_id": "R-1\x00"}, "receipt_id"),
    ("receipt id with a newline at the end", {"receipt_id": "R-1\n"}, "receipt_id"),
    ("receipt id in Cyrillic", {"receipt_id": "Р-1"}, "receipt_id"),
    ("receipt id of Arabic-Indic digits", {"receipt_id": "R-\u0661\u0662"}, "receipt_id"),
    ("receipt id of 129 characters", {"receipt_id": "R" * 129}, "receipt_id"),
    ("payee id with NUL", {"payee_id": "payee\x00"}, "payee_id"),
    ("payee id of 65 characters", {"payee_id": "p" * 65}, "payee_id"),
    ("empty payee id", {"payee_id": ""}, "payee_id"),
    ("phone with NUL", {"msisdn": "380001234567\x00"}, "msisdn"),
    ("phone with a file separator", {"msisdn": "380 00\x1c1234567"}, "msisdn"),
    ("phone of 33 characters", {"msisdn": "+380 00 123 45 67" + " " * 16}, "msisdn"),
    ("token with NUL", {"msisdn": _DROP, "msisdn_token": "gAAAAA" + "x" * 40 + "\x00"}, "msisdn_token"),
    ("token outside base64", {"msisdn": _DROP, "msisdn_token": "gAAAAA" + "x" * 40 + "<>"}, "msisdn_token"),
    ("token of 1025 characters", {"msisdn": _DROP, "msisdn_token": "g" * 1025}, "msisdn_token"),
    ("currency with NUL", {"currency": "UAH\x00"}, "currency"),
    ("language with NUL", {"language": "uk\x00"}, "language"),
    ("field name with NUL", {"receipt_id\x00": "R-1"}, "receipt_id\x00"),
    # times
    ("accepted_at with no UTC form", {"accepted_at": "0001-01-01T00:00:00+05:00"}, "accepted_at"),
    ("accepted_at past year 9999 in UTC", {"accepted_at": "9999-12-31T23:59:59-05:00"}, "accepted_at"),
    ("accepted_at 1e30", {"accepted_at": _raw("1e30")}, "accepted_at"),
    ("accepted_at with NUL", {"accepted_at": "2026-11-27T10:00:00Z\x00"}, "accepted_at"),
]


@pytest.mark.parametrize(("name", "overrides", "field"), _CASES, ids=[c[0] for c in _CASES])
async def test_what_the_ledger_cannot_hold_is_422_naming_the_field_and_changes_nothing(
    backend_stack: Stack, name: str, overrides: dict[str, Any], field: str
) -> None:
    stack = backend_stack
    receipt_id, raw = _body(overrides)
    before = await state(stack)

    resp = await stack.http.post(f"{stack.internal_url}/v1/receipts/accepted", content=raw, headers=AUTH)

    assert resp.status_code == 422, f"{name}: {resp.status_code} {resp.text[:300]}"
    answer = resp.json()
    assert answer["error"] == "invalid request"
    assert field in {f["field"] for f in answer["fields"]}, answer
    assert not await workflow_exists(stack.client, payout_workflow_id(receipt_id))
    assert await state(stack) == before  # no row in any ledger table


async def test_a_float_integer_gets_a_message_that_says_so(backend_stack: Stack) -> None:
    _, raw = _body({"telegram_id": _raw("1e30")})
    resp = await backend_stack.http.post(
        f"{backend_stack.internal_url}/v1/receipts/accepted", content=raw, headers=AUTH
    )
    assert resp.status_code == 422
    [message] = [f["message"] for f in resp.json()["fields"] if f["field"] == "telegram_id"]
    assert "JSON integer" in message and "1e+30" in message


# Every visible ASCII character, 128 in all: the longest, widest fiscal key intake accepts.
_WIDEST_FISCAL_KEY = (string.digits + string.ascii_letters + string.punctuation) * 2
assert len(_WIDEST_FISCAL_KEY) >= 128


async def test_boundary_values_are_accepted_and_reserved_and_paid(paying_stack: Stack) -> None:
    stack = paying_stack
    tag = uuid.uuid4().hex
    receipt_id = f"B{tag}" + "x" * (63 - len(tag))  # the longest receipt id: 64 characters
    fiscal_key = (tag + _WIDEST_FISCAL_KEY)[:128]
    body = sample_receipt(receipt_id, telegram_id=SIGNED_64_MAX, fiscal_key=fiscal_key, amount_kopecks=100_000)
    assert len(receipt_id) == 64 and len(fiscal_key) == 128

    resp = await stack.post_receipt(body)
    assert resp.status_code == 202, resp.text
    assert resp.json()["new"] is True
    stack.started.append(payout_workflow_id(receipt_id))
    handle = stack.client.get_workflow_handle(payout_workflow_id(receipt_id))
    view = await stack.wait_status(handle, {S.PAID, S.MANUAL_REVIEW, S.REJECTED, S.FAILED})

    assert view.status == S.PAID, view
    row = await stack.ledger.payouts.by_receipt(receipt_id)
    assert row is not None
    assert (row.status, row.telegram_id, row.fiscal_key, row.receipt_id) == (
        S.PAID,
        SIGNED_64_MAX,
        fiscal_key,
        receipt_id,
    )


async def test_every_field_out_of_bounds_is_named(backend_stack: Stack) -> None:
    body = sample_receipt(f"BND-{uuid.uuid4().hex[:12]}", telegram_id=2**63, fiscal_key="FN\x00", payee_id="p" * 65)
    resp = await backend_stack.post_receipt(body)
    assert resp.status_code == 422
    assert {f["field"] for f in resp.json()["fields"]} == {"telegram_id", "fiscal_key", "payee_id"}
    assert await backend_stack.ledger.payouts.by_receipt(body["receipt_id"]) is None
