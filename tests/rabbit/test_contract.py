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


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-le", "utf-32", "utf-8-sig"])
def test_a_body_in_another_encoding_than_utf_8_is_invalid_json(encoding: str) -> None:
    body = json.dumps(good_message("t", 1)).encode(encoding)
    with pytest.raises(Refused) as caught:
        read_message(body, 64 * 1024)
    assert caught.value.reason is DeadLetterReason.INVALID_JSON


@pytest.mark.parametrize(("accepted_at", "reason"), [
    (1764237600, DeadLetterReason.SCHEMA_ERROR),
    (1764237600.5, DeadLetterReason.SCHEMA_ERROR),
    ("1764237600", DeadLetterReason.INVALID_PAYLOAD),
    ("2026-11-27", DeadLetterReason.INVALID_PAYLOAD),
    ("2026-11-27T10:00:00", DeadLetterReason.INVALID_PAYLOAD),
    ("27.11.2026 10:00:00 +02:00", DeadLetterReason.INVALID_PAYLOAD),
])
def test_accepted_at_is_iso_8601_text_with_a_time_zone(accepted_at: object, reason: DeadLetterReason) -> None:
    refused = refusal({**good_message("t", 1), "accepted_at": accepted_at})
    assert refused.reason is reason
    assert refused.detail.startswith("accepted_at: ") and "ISO 8601" in refused.detail


@pytest.mark.parametrize("accepted_at", [
    "2026-11-27T10:00:00+02:00", "2026-11-27T08:00:00Z", "2026-11-27T08:00:00.123456789Z", "2026-11-27T10:00+0200",
])
def test_the_forms_of_iso_8601_the_bot_may_send_are_read(accepted_at: str) -> None:
    decision = read_message(json.dumps({**good_message("t", 1), "accepted_at": accepted_at}).encode(), 1024)
    assert decision.receipt is not None
    assert decision.receipt.accepted_at.utcoffset() is not None


def test_a_lone_surrogate_is_a_schema_error_as_a_field_name_and_as_a_value() -> None:
    as_name = refusal({**good_message("t", 1), "\ud800": 1})
    as_value = refusal({**good_message("t", 1), "payee_id": "P-\udfff"})

    assert (as_name.reason, as_value.reason) == (DeadLetterReason.SCHEMA_ERROR, DeadLetterReason.SCHEMA_ERROR)
    assert as_name.detail.startswith("\\ud800: ") and as_value.detail.startswith("payee_id: ")
    for refused in (as_name, as_value):
        refused.detail.encode("utf-8")  # a header value the broker can carry
