"""The receipt.accepted contract's edges, read as the consumer reads them (no broker needed)."""

from __future__ import annotations

import json

import pytest

from console.publish import good_message
from rabbit.contract import DeadLetterReason, Refused, read_message
from tests.stack import TEST_PHONE


def refusal(message: object) -> Refused:
    with pytest.raises(Refused) as caught:
        read_message(json.dumps(message).encode(), 64 * 1024)
    return caught.value


def test_a_phone_in_the_wrong_place_never_reaches_the_reason() -> None:
    good = good_message("t", 1)
    as_float = refusal({**good, "telegram_id": float(TEST_PHONE)})
    as_key = refusal({**good, TEST_PHONE: "x"})

    assert (as_float.reason, as_key.reason) == (DeadLetterReason.SCHEMA_ERROR, DeadLetterReason.SCHEMA_ERROR)
    assert "telegram_id" in as_float.detail
    for refused in (as_float, as_key):
        assert TEST_PHONE not in refused.detail and TEST_PHONE not in str(refused)


@pytest.mark.parametrize(("version", "reason"), [
    (2, DeadLetterReason.UNKNOWN_VERSION), ("1", DeadLetterReason.SCHEMA_ERROR),
    (True, DeadLetterReason.SCHEMA_ERROR), (1.0, DeadLetterReason.SCHEMA_ERROR), (None, DeadLetterReason.SCHEMA_ERROR),
])
def test_the_version_is_an_integer_this_service_reads(version: object, reason: DeadLetterReason) -> None:
    assert refusal({**good_message("t", 1), "version": version}).reason is reason


def test_only_accepted_is_read_further() -> None:
    rejected = read_message(json.dumps({"version": 1, "status": "rejected"}).encode(), 1024)
    accepted = read_message(json.dumps(good_message("t", 1)).encode(), 1024)

    assert (rejected.status, rejected.receipt) == ("rejected", None)
    assert accepted.receipt is not None and accepted.receipt.amount_kopecks == 2500
    assert refusal({"version": 1, "status": ""}).reason is DeadLetterReason.SCHEMA_ERROR


@pytest.mark.parametrize("name", ["+380 00 000 10 61", "+38 (000) 000-10-61", "380.00.000.10.61", "(000) 000 10 61"])
def test_a_phone_as_a_field_name_is_redacted_whatever_its_spacing(name: str) -> None:
    refused = refusal({**good_message("t", 1), name: "x"})

    assert refused.reason is DeadLetterReason.SCHEMA_ERROR
    digits = "".join(ch for ch in refused.detail if ch.isdigit())
    assert "0001061" not in digits and "00000" not in digits, refused.detail


def test_a_status_that_is_a_phone_is_redacted_before_it_is_logged() -> None:
    decision = read_message(json.dumps({"version": 1, "status": "+380 00 000 10 61"}).encode(), 1024)
    assert decision.receipt is None and decision.status == "+380•••••61"
