"""`payouts.msisdn.mask_phones`: the one redaction of phone numbers in text, whatever their spacing."""

from __future__ import annotations

import pytest

from payouts.msisdn import mask_phones

# Operator code 00: nobody's number.
SPELLINGS = [
    "380000001061", "+380000001061", "+380 00 000 10 61", "+38 (000) 000-10-61", "380.00.000.10.61",
    "380-00-000-10-61", "+ 380 00 000 1061", "380/00/000/10/61",
]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_ukrainian_mobile_number_is_masked_however_it_is_spaced(spelling: str) -> None:
    for text in (spelling, f"extra field {spelling}: not permitted", f"({spelling})"):
        masked = mask_phones(text)
        assert "+380•••••61" in masked, text
        assert "0001061" not in masked.replace(" ", "").replace("-", "").replace(".", "")


def test_portmone_texts_keep_their_other_numbers() -> None:
    text = "bill 13800012345678 of 27.11.2026 10:00:00, amount 25.00"
    assert mask_phones(text) == text


def test_text_a_client_wrote_loses_every_long_number_in_any_spacing() -> None:
    for number in ("(000) 000-10-61", "00 000 10 61", "+44 20 0000 0000", "9223372036854775807", "1.234.567"):
        blanked = mask_phones(f"field {number}!", blank_numbers=True)
        assert sum(ch.isdigit() for ch in blanked) < 7, blanked
        assert blanked.startswith("field ") and blanked.endswith("!")
    assert mask_phones("+380 00 000 10 61", blank_numbers=True) == "+380•••••61"
    assert mask_phones("amount_kopecks: 123456", blank_numbers=True) == "amount_kopecks: 123456"
