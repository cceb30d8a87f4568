"""One redaction helper: no password and no clear phone number in anything we log or archive."""

from __future__ import annotations

from portmone import mask_phones, redact_params, redact_xml

PHONE = "380001234567"
MASKED = "+380•••••67"


def test_redact_params_masks_password_and_phone() -> None:
    params = {
        "method": "bills.create",
        "login": "dev-login",
        "password": "s3cret-pass",
        "contractNumber": PHONE,
        "amount": "25.00",
        "comment": f"for {PHONE}",
    }
    out = redact_params(params)
    assert out["password"] == "***"
    assert out["contractNumber"] == MASKED
    assert out["comment"] == f"for {MASKED}"
    assert out["amount"] == "25.00"
    assert out["login"] == "dev-login"
    assert "s3cret-pass" not in repr(out)
    assert PHONE not in repr(out)
    # The input is not modified.
    assert params["password"] == "s3cret-pass"


def test_redact_params_invalid_phone_is_fully_hidden() -> None:
    assert redact_params({"contractNumber": "0671234567"})["contractNumber"] == "***"
    assert redact_params({"contractNumber": ""})["contractNumber"] == "***"


def test_redact_params_is_case_insensitive_on_names() -> None:
    out = redact_params({"PASSWORD": "x1", "ContractNumber": PHONE})
    assert out == {"PASSWORD": "***", "ContractNumber": MASKED}


def test_redact_xml_masks_contract_number_elements() -> None:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?><rsp status="ok"><bill><billId>1700000000000000001</billId>'
        f"<contractNumber>{PHONE}</contractNumber><amount>25.00</amount></bill></rsp>"
    )
    out = redact_xml(body)
    assert PHONE not in out
    assert f"<contractNumber>{MASKED}</contractNumber>" in out
    assert "<billId>1700000000000000001</billId>" in out
    assert "<amount>25.00</amount>" in out


def test_redact_xml_masks_invalid_numbers_cdata_and_attributes() -> None:
    assert redact_xml("<contractNumber>12345</contractNumber>") == "<contractNumber>***</contractNumber>"
    assert PHONE not in redact_xml(f"<contractNumber><![CDATA[{PHONE}]]></contractNumber>")
    assert PHONE not in redact_xml(f'<bill contractNumber="{PHONE}"/>')
    assert PHONE not in redact_xml(f"<ns:contractNumber xmlns:ns='u'> {PHONE} </ns:contractNumber>")


def test_redact_xml_masks_passwords() -> None:
    out = redact_xml('<req password="hunter22"><password>hunter22</password><Password>x</Password></req>')
    assert "hunter22" not in out
    assert out.count("***") == 3


def test_redact_xml_masks_phones_in_free_text_and_survives_garbage() -> None:
    out = redact_xml(f"<error_description>number +{PHONE} is wrong</error_description><broken")
    assert PHONE not in out
    assert MASKED in out
    assert out.endswith("<broken")


def test_mask_phones_leaves_longer_numbers_alone() -> None:
    assert mask_phones("bill 13800012345678") == "bill 13800012345678"
    assert mask_phones(f"a {PHONE} b") == f"a {MASKED} b"
