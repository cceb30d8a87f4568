"""Hardened parsing of <rsp>: typed results for good documents, XmlRejected with a reason for the rest."""

from __future__ import annotations

import pytest

from portmone import BillStatus, ErrorKind, XmlRejected, parse_rsp

CAP = 64 * 1024
DECL = b'<?xml version="1.0" encoding="UTF-8"?>\n'

OK = DECL + (
    b'<rsp status="ok"><bill><billId>170000000000100001</billId><status>CREATED</status>'
    b"<contractNumber>380001234567</contractNumber><amount>25.00</amount><currency>UAH</currency>"
    b"<comment>receipt r-1</comment><payeeId>dev-payee-1</payeeId><date>01.02.2025</date></bill></rsp>"
)


def _bill_doc(status: bytes = b"CREATED", amount: bytes = b"25.00") -> bytes:
    return DECL + (
        b'<rsp status="ok"><bill><billId>42</billId><status>' + status + b"</status>"
        b"<amount>" + amount + b"</amount></bill></rsp>"
    )


def test_ok_answer_becomes_a_typed_bill() -> None:
    rsp = parse_rsp(OK, max_bytes=CAP)
    assert rsp.ok is True
    assert rsp.error is None
    assert rsp.bill is not None
    bill = rsp.bill
    assert bill.bill_id == "170000000000100001"
    assert bill.status is BillStatus.CREATED
    assert bill.raw_status == "CREATED"
    assert bill.contract_number == "380001234567"
    assert bill.amount_kopecks == 2500
    assert bill.currency == "UAH"
    assert bill.comment == "receipt r-1"
    assert bill.payee_id == "dev-payee-1"
    # The bill's repr is safe to log: the phone is masked.
    assert "380001234567" not in repr(bill)
    assert bill.contract_masked == "+380•••••67"


def test_fail_version_2_carries_the_description() -> None:
    body = (
        DECL
        + (
            '<rsp status="fail"><error code="4">Оператор не відповів</error>'
            "<error_description>Оператор не відповів вчасно.</error_description></rsp>"
        ).encode()
    )
    rsp = parse_rsp(body, max_bytes=CAP)
    assert rsp.ok is False
    assert rsp.bill is None
    assert rsp.error is not None
    assert rsp.error.code == "4"
    assert rsp.error.message == "Оператор не відповів"
    assert rsp.error.description == "Оператор не відповів вчасно."
    assert rsp.error.kind is ErrorKind.TRANSIENT
    assert rsp.error.fell_back_to_v1 is False


def test_fail_without_description_is_a_fall_back_to_version_1() -> None:
    body = DECL + b'<rsp status="fail"><error code="10">Auth</error></rsp>'
    rsp = parse_rsp(body, max_bytes=CAP)
    assert rsp.error is not None
    assert rsp.error.description is None
    assert rsp.error.fell_back_to_v1 is True
    assert rsp.error.kind is ErrorKind.CONFIGURATION
    # When we asked for version 1 it is no fall-back.
    asked_v1 = parse_rsp(body, max_bytes=CAP, requested_version=1)
    assert asked_v1.error is not None
    assert asked_v1.error.fell_back_to_v1 is False


def test_unknown_error_code_is_permanent_and_fail_without_error_is_typed() -> None:
    rsp = parse_rsp(DECL + b'<rsp status="fail"><error code="999">?</error></rsp>', max_bytes=CAP)
    assert rsp.error is not None
    assert rsp.error.kind is ErrorKind.PERMANENT
    bare = parse_rsp(DECL + b'<rsp status="fail"/>', max_bytes=CAP)
    assert bare.error is not None
    assert bare.error.code == ""
    assert bare.error.kind is ErrorKind.PERMANENT


def test_rejected_callback_carries_error_and_bill() -> None:
    body = DECL + (
        b'<rsp status="fail"><error code="30">Declined</error><error_description>long</error_description>'
        b"<bill><billId>7</billId><status>REJECTED</status></bill></rsp>"
    )
    rsp = parse_rsp(body, max_bytes=CAP)
    assert rsp.error is not None
    assert rsp.error.code == "30"
    assert rsp.bill is not None
    assert rsp.bill.status is BillStatus.REJECTED


def test_unknown_status_is_unknown_with_the_raw_text_kept() -> None:
    rsp = parse_rsp(_bill_doc(status=b"HALF_PAID"), max_bytes=CAP)
    assert rsp.bill is not None
    assert rsp.bill.status is BillStatus.UNKNOWN
    assert rsp.bill.raw_status == "HALF_PAID"


@pytest.mark.parametrize(
    ("raw", "expected"), [(b"payed", BillStatus.PAYED), (b" Rejected ", BillStatus.REJECTED)]
)
def test_status_is_matched_case_insensitively(raw: bytes, expected: BillStatus) -> None:
    rsp = parse_rsp(_bill_doc(status=raw), max_bytes=CAP)
    assert rsp.bill is not None
    assert rsp.bill.status is expected


def test_status_word_unknown_itself_is_unknown() -> None:
    rsp = parse_rsp(_bill_doc(status=b"unknown"), max_bytes=CAP)
    assert rsp.bill is not None
    assert rsp.bill.status is BillStatus.UNKNOWN


def test_rsp_status_attribute_is_case_insensitive() -> None:
    assert parse_rsp(b'<rsp status="OK"><bill><billId>1</billId></bill></rsp>', max_bytes=CAP).ok is True


def _rejected(body: bytes, *, max_bytes: int = CAP) -> str:
    with pytest.raises(XmlRejected) as info:
        parse_rsp(body, max_bytes=max_bytes)
    reason = str(info.value)
    assert reason
    assert len(reason) < 300
    return reason


def test_malformed_xml_is_rejected() -> None:
    assert "malformed" in _rejected(b'<rsp status="ok"><bill><billId>1</billId></rsp>')


def test_doctype_is_rejected() -> None:
    assert "DOCTYPE" in _rejected(b'<!DOCTYPE rsp><rsp status="ok"/>')
    assert "DOCTYPE" in _rejected(b'<!doctype rsp SYSTEM "http://example.invalid/x.dtd"><rsp status="ok"/>')


def test_external_entity_is_rejected_and_never_resolved() -> None:
    body = (
        b'<?xml version="1.0"?><!DOCTYPE rsp [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>'
        b'<rsp status="fail"><error code="1">&xxe;</error></rsp>'
    )
    reason = _rejected(body)
    assert "root:" not in reason
    assert "DOCTYPE" in reason or "ENTITY" in reason


def test_billion_laughs_is_rejected() -> None:
    entities = b"".join(
        b'<!ENTITY lol%d "&lol%d;&lol%d;&lol%d;&lol%d;&lol%d;&lol%d;&lol%d;&lol%d;&lol%d;&lol%d;">'
        % ((i,) + (i - 1,) * 10)
        for i in range(1, 10)
    )
    body = (
        b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol0 "lol">'
        + entities
        + b']><rsp status="ok">&lol9;</rsp>'
    )
    _rejected(body)


def test_undeclared_entity_reference_is_rejected() -> None:
    _rejected(b'<rsp status="fail"><error code="1">&undefined;</error></rsp>')


def test_oversize_body_is_rejected_before_parsing() -> None:
    body = OK + b" " * 100
    assert "cap" in _rejected(body, max_bytes=len(OK))
    assert parse_rsp(OK, max_bytes=len(OK)).ok


def test_non_utf8_declared_encoding_with_non_ascii_bytes_is_rejected() -> None:
    text = (
        '<?xml version="1.0" encoding="windows-1251"?>'
        '<rsp status="fail"><error code="1">Помилка</error></rsp>'
    )
    reason = _rejected(text.encode("cp1251"))
    assert "UTF-8" in reason


def test_non_utf8_declaration_with_pure_ascii_body_is_tolerated() -> None:
    body = b'<?xml version="1.0" encoding="windows-1251"?><rsp status="fail"><error code="1">x</error></rsp>'
    rsp = parse_rsp(body, max_bytes=CAP)
    assert rsp.error is not None
    assert rsp.error.code == "1"


def test_invalid_utf8_is_rejected() -> None:
    assert "UTF-8" in _rejected(b'<rsp status="fail"><error code="1">\xff\xfe\xfa</error></rsp>')


def test_utf16_body_is_rejected() -> None:
    body = '<?xml version="1.0" encoding="UTF-16"?><rsp status="ok"/>'.encode("utf-16")
    assert "UTF-8" in _rejected(body)


def test_utf8_bom_is_accepted() -> None:
    assert parse_rsp(b"\xef\xbb\xbf" + OK, max_bytes=CAP).ok is True


@pytest.mark.parametrize(
    "body", [b"", b"   ", b"Bad Gateway", b'{"status": "ok"}', b"<html><body>502</body></html"]
)
def test_non_xml_is_rejected(body: bytes) -> None:
    _rejected(body)


def test_wrong_root_is_rejected() -> None:
    assert "root" in _rejected(b'<response status="ok"/>')
    assert "root" in _rejected(b'<x:rsp xmlns:x="urn:x" status="ok"/>')


def test_missing_or_bad_status_is_rejected() -> None:
    assert "missing" in _rejected(b"<rsp><bill><billId>1</billId></bill></rsp>")
    assert "status" in _rejected(b'<rsp status="maybe"/>')


def test_huge_text_is_rejected() -> None:
    body = b'<rsp status="fail"><error code="1">' + b"a" * 5000 + b"</error></rsp>"
    assert "4096" in _rejected(body)


def test_huge_attribute_is_rejected() -> None:
    _rejected(b'<rsp status="fail"><error code="' + b"1" * 5000 + b'">x</error></rsp>')


def test_deep_nesting_is_rejected() -> None:
    body = b'<rsp status="ok">' + b"<a>" * 20 + b"</a>" * 20 + b"</rsp>"
    assert "deeper" in _rejected(body)


@pytest.mark.parametrize("amount", [b"1e3", b"-1.00", b"1,00", b"1.234", b"abc", b"NaN"])
def test_bad_amount_is_rejected(amount: bytes) -> None:
    assert "amount" in _rejected(_bill_doc(amount=amount))


def test_duplicate_field_is_rejected() -> None:
    body = (
        b'<rsp status="ok"><bill><billId>1</billId><amount>1.00</amount><amount>99.00</amount></bill></rsp>'
    )
    assert "more than once" in _rejected(body)


def test_bill_without_id_is_rejected() -> None:
    assert "billId" in _rejected(b'<rsp status="ok"><bill><status>PAYED</status></bill></rsp>')


def test_comments_and_processing_instructions_are_ignored() -> None:
    body = b'<rsp status="ok"><!-- hi --><?pi x?><bill><billId>1<!-- c --></billId></bill></rsp>'
    rsp = parse_rsp(body, max_bytes=CAP)
    assert rsp.bill is not None
    assert rsp.bill.bill_id == "1"


def test_only_xml_rejected_escapes_for_odd_input() -> None:
    for body in (b"\x00\x01\x02", b"<?xml version='1.0'?>", b"<rsp status='ok'>" * 3, b"<<<>>>"):
        _rejected(body)
