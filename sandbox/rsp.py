"""Building the simulated Portmone's `<rsp>` documents with lxml, from protocol.py's names only."""

from __future__ import annotations

from lxml import etree

from payouts.money import format_amount
from portmone import protocol as p
from sandbox.messages import error_text
from sandbox.state import SimBill

CONTENT_TYPE = "text/xml"
CHARSET = "utf-8"


def _to_bytes(root: etree._Element) -> bytes:
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def _bill(parent: etree._Element, bill: SimBill, status: str) -> None:
    node = etree.SubElement(parent, p.TAG_BILL)
    for tag, value in (
        (p.TAG_BILL_ID, bill.bill_id),
        (p.TAG_BILL_STATUS, status),
        (p.TAG_CONTRACT_NUMBER, bill.contract_number),
        (p.TAG_AMOUNT, format_amount(bill.amount_kopecks)),
        (p.TAG_CURRENCY, bill.currency),
        (p.TAG_COMMENT, bill.comment),
        (p.TAG_PAYEE_ID, bill.payee_id),
        (p.TAG_BILL_DATE, bill.date),
    ):
        etree.SubElement(node, tag).text = value


def ok(bill: SimBill, status: str) -> bytes:
    """`<rsp status="ok"><bill>…</bill></rsp>`."""
    root = etree.Element(p.TAG_RSP, {p.ATTR_STATUS: p.RSP_OK})
    _bill(root, bill, status)
    return _to_bytes(root)


def fail(
    code: str, *, lang: str | None, version: int, bill: SimBill | None = None, bill_status: str | None = None
) -> bytes:
    """`<rsp status="fail"><error code="…">short</error>[<error_description>…]</rsp>`;
    the description only for version 2, the bill when one is named (a REJECTED callback)."""
    short, long = error_text(code, lang)
    root = etree.Element(p.TAG_RSP, {p.ATTR_STATUS: p.RSP_FAIL})
    error = etree.SubElement(root, p.TAG_ERROR, {p.ATTR_ERROR_CODE: code})
    error.text = short
    if version >= 2:
        etree.SubElement(root, p.TAG_ERROR_DESCRIPTION).text = long
    if bill is not None:
        _bill(root, bill, bill_status or bill.status)
    return _to_bytes(root)
