"""The workflow input's bounds (payouts.models) against the ledger's columns, on SQLite and PostgreSQL.

The largest values a PayoutRequest accepts are reserved without error and read back unchanged; one
step past any bound, the request is refused before it could reach the ledger.
"""

from __future__ import annotations

import string
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from ledger import Ledger
from payouts.models import PayoutRequest, payout_workflow_id
from payouts.status import PayoutStatus
from tests.ledger.helpers import make_req

SIGNED_64_MAX = 2**63 - 1  # the ledger's BIGINT columns, on both databases
_VISIBLE = string.digits + string.ascii_letters + string.punctuation  # 94 characters


def _widest(**overrides: Any) -> dict[str, Any]:
    """A PayoutRequest's fields, each at the edge of its bound."""
    fields: dict[str, Any] = {
        "receipt_id": "R" + "x" * 63,
        "telegram_id": SIGNED_64_MAX,
        "msisdn_token": "gAAAAA" + "x" * 1018,
        "masked_msisdn": "+380" + "•" * 28,  # 32 characters, 88 UTF-8 bytes
        "user_key": "f" * 128,
        "amount_kopecks": 10_000_000,
        "currency": "UAH",
        "payee_id": "p" * 64,
        "fiscal_key": (_VISIBLE * 2)[:128],
        "accepted_at": datetime(2026, 11, 27, 10, tzinfo=UTC),
        "language": "en",
    }
    fields.update(overrides)
    return fields


async def test_the_widest_payout_request_is_reserved_and_read_back_unchanged(ledger: Ledger) -> None:
    request = PayoutRequest.model_validate(_widest())
    payout_id = payout_workflow_id(request.receipt_id)
    result = await ledger.payouts.reserve(
        make_req(
            payout_id=payout_id,
            receipt_id=request.receipt_id,
            fiscal_key=request.fiscal_key,
            user_key=request.user_key,
            masked_msisdn=request.masked_msisdn,
            telegram_id=request.telegram_id,
            amount_kopecks=request.amount_kopecks,
            currency=request.currency,
            payee_id=request.payee_id,
            owner=payout_id,
            max_payout_kopecks=request.amount_kopecks,
            daily_budget_kopecks=request.amount_kopecks,
        )
    )
    assert (result.accepted, result.status) == (True, PayoutStatus.RESERVED), result

    row = await ledger.payouts.by_receipt(request.receipt_id)
    assert row is not None
    assert (
        row.id,
        row.receipt_id,
        row.fiscal_key,
        row.user_key,
        row.masked_msisdn,
        row.telegram_id,
        row.amount_kopecks,
        row.payee_id,
    ) == (
        payout_id,
        request.receipt_id,
        request.fiscal_key,
        request.user_key,
        request.masked_msisdn,
        SIGNED_64_MAX,
        10_000_000,
        request.payee_id,
    )


_PAST_THE_BOUND: list[tuple[str, dict[str, Any]]] = [
    ("telegram id 2^63", {"telegram_id": SIGNED_64_MAX + 1}),
    ("telegram id 0", {"telegram_id": 0}),
    ("telegram id as a float", {"telegram_id": 1e30}),
    ("receipt id of 65 characters", {"receipt_id": "R" * 65}),
    ("fiscal key of 129 characters", {"fiscal_key": "F" * 129}),
    ("fiscal key with NUL", {"fiscal_key": "FN1\x00"}),
    ("fiscal key with a space", {"fiscal_key": "FN1 FD2"}),
    ("empty fiscal key", {"fiscal_key": ""}),
    ("payee id of 65 characters", {"payee_id": "p" * 65}),
    ("payee id with NUL", {"payee_id": "p\x00"}),
    ("masked phone of 33 characters", {"masked_msisdn": "+380" + "•" * 29}),
    ("masked phone with NUL", {"masked_msisdn": "+380•••••6\x00"}),
    ("user key of 129 characters", {"user_key": "f" * 129}),
    ("user key with a newline", {"user_key": "f" * 20 + "\n"}),
    ("token of 1025 characters", {"msisdn_token": "g" * 1025}),
    ("token with NUL", {"msisdn_token": "gAAAAA" + "x" * 20 + "\x00"}),
    ("amount over the maximum", {"amount_kopecks": 10_000_001}),
    ("accepted_at with no UTC form", {"accepted_at": datetime.fromisoformat("0001-01-01T00:00:00+05:00")}),
]


@pytest.mark.parametrize(("name", "overrides"), _PAST_THE_BOUND, ids=[c[0] for c in _PAST_THE_BOUND])
def test_one_step_past_a_bound_the_workflow_input_is_refused(name: str, overrides: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as caught:
        PayoutRequest.model_validate(_widest(**overrides))
    assert {str(e["loc"][0]) for e in caught.value.errors()} == set(overrides), name


def test_the_workflow_input_still_decodes_from_json_as_histories_hold_it() -> None:
    """Committed histories carry the input as JSON: the tightened bounds must read it back."""
    request = PayoutRequest.model_validate(_widest())
    assert PayoutRequest.model_validate_json(request.model_dump_json()) == request
