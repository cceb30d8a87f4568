"""Hardened parsing of Portmone's `<rsp>` documents (answers to `bills.create` and callbacks).

Hostile or broken input never gets past here as anything but `XmlRejected` with a short reason:

- the body is capped (`max_bytes`) before the parser sees a byte;
- any DOCTYPE or ENTITY declaration is refused, both on the raw bytes and on the parsed tree, and
  the parser never resolves entities, loads a DTD or touches the network (no XXE, no billion laughs);
- Portmone answers in UTF-8, so the body must be valid UTF-8 and is always parsed as UTF-8. A
  declared encoding other than UTF-8 is tolerated only when every byte is ASCII, where the
  declaration cannot change the meaning of a single character; otherwise it is refused. UTF-16/32
  bodies (BOM or NUL bytes) are refused;
- the tree is small and flat: depth, element count, attribute and text lengths are capped, and no
  element below the root is namespaced (no XInclude or other XML-processing vocabularies);
- the root is `<rsp status="ok|fail">`; known fields appear at most once; amounts go through
  `payouts.money.parse_amount`; statuses through `protocol.parse_bill_status` (unknown ones become
  UNKNOWN with the raw text kept).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from lxml import etree

from payouts.money import MoneyError, parse_amount
from portmone import protocol as p
from portmone.results import Bill, PortmoneError

MAX_TEXT_CHARS = 4096
MAX_ATTRIBUTE_CHARS = 4096
MAX_DEPTH = 8
MAX_ELEMENTS = 256

_DECLARATIONS = re.compile(rb"<!\s*(doctype|entity)", re.IGNORECASE)
_XML_DECL = re.compile(rb"^\s*<\?xml\s[^>]*?encoding\s*=\s*[\"']([A-Za-z0-9._:-]+)[\"']", re.IGNORECASE)
_UTF8_NAMES = frozenset({"utf-8", "utf8"})
_BILL_ID = re.compile(p.BILL_ID_PATTERN)
_UNICODE_BOMS = (b"\xff\xfe", b"\xfe\xff", b"\x00\x00\xfe\xff")
_BILL_FIELDS = (
    p.TAG_BILL_ID,
    p.TAG_BILL_STATUS,
    p.TAG_CONTRACT_NUMBER,
    p.TAG_AMOUNT,
    p.TAG_CURRENCY,
    p.TAG_COMMENT,
    p.TAG_PAYEE_ID,
    p.TAG_BILL_DATE,
)


class XmlRejected(ValueError):
    """A body that is not a trustworthy `<rsp>` document; the message is a short human reason."""


@dataclass(frozen=True, slots=True)
class Rsp:
    """A parsed `<rsp>`: `ok`, the error of a `fail`, and the bill when one is named."""

    ok: bool
    error: PortmoneError | None
    bill: Bill | None


def _parser() -> etree.XMLParser:
    # A fresh parser per call: lxml parsers are not safe to share between threads.
    return etree.XMLParser(
        encoding="utf-8",
        resolve_entities=False,
        no_network=True,
        load_dtd=False,
        huge_tree=False,
        dtd_validation=False,
        remove_comments=True,
        remove_pis=True,
    )


def _check_encoding(body: bytes) -> None:
    if body.startswith(_UNICODE_BOMS) or b"\x00" in body:
        raise XmlRejected("body is not UTF-8 (UTF-16/32 or NUL bytes)")
    try:
        body.decode("utf-8", errors="strict")
    except UnicodeDecodeError as exc:
        raise XmlRejected(f"body is not valid UTF-8 (byte {exc.start})") from None
    match = _XML_DECL.match(body.removeprefix(b"\xef\xbb\xbf"))
    if match is None:
        return
    declared = match.group(1).decode("ascii").lower()
    if declared in _UTF8_NAMES:
        return
    if not body.isascii():
        raise XmlRejected(f"declared encoding {declared!r} is not UTF-8 and the body is not plain ASCII")


def _parse_tree(body: bytes) -> etree._Element:
    try:
        root = etree.fromstring(body, _parser())
    except etree.XMLSyntaxError as exc:
        reason = str(exc.msg or "syntax error").splitlines()[0][:160]
        raise XmlRejected(f"malformed XML: {reason}") from None
    except (etree.LxmlError, ValueError, TypeError) as exc:
        raise XmlRejected(f"unparseable XML: {type(exc).__name__}") from None
    if root is None:
        raise XmlRejected("empty document")
    docinfo = root.getroottree().docinfo
    # getattr: lxml-stubs lag behind lxml's DocInfo attributes.
    doctype = getattr(docinfo, "doctype", "")
    internal_dtd = getattr(docinfo, "internalDTD", None)
    external_dtd = getattr(docinfo, "externalDTD", None)
    if doctype or internal_dtd is not None or external_dtd is not None:
        raise XmlRejected("DOCTYPE declarations are not allowed")
    return root


def _check_shape(root: etree._Element) -> None:
    for count, node in enumerate(root.iter(), start=1):
        if count > MAX_ELEMENTS:
            raise XmlRejected(f"more than {MAX_ELEMENTS} elements")
        if not isinstance(node.tag, str):
            # Entity references or other non-element nodes: nothing legitimate produces them here.
            raise XmlRejected("unexpected non-element node")
        if node.tag.startswith("{") and node is not root:
            # Portmone's documents use no namespaces; XInclude and friends do.
            raise XmlRejected(f"namespaced element <{_name(node)}> is not expected")
        depth = sum(1 for _ in node.iterancestors())
        if depth >= MAX_DEPTH:
            raise XmlRejected(f"nesting deeper than {MAX_DEPTH}")
        for text in (node.text, node.tail):
            if text is not None and len(text) > MAX_TEXT_CHARS:
                raise XmlRejected(f"text longer than {MAX_TEXT_CHARS} characters in <{_name(node)}>")
        for name, value in node.attrib.items():
            if len(value) > MAX_ATTRIBUTE_CHARS or len(name) > 128:
                raise XmlRejected(
                    f"attribute longer than {MAX_ATTRIBUTE_CHARS} characters in <{_name(node)}>"
                )


def _name(node: etree._Element) -> str:
    return str(node.tag)[:40]


def _one(parent: etree._Element, tag: str) -> etree._Element | None:
    found = [child for child in parent if child.tag == tag]
    if len(found) > 1:
        raise XmlRejected(f"<{tag}> appears more than once in <{_name(parent)}>")
    return found[0] if found else None


def _text(parent: etree._Element, tag: str) -> str | None:
    """Stripped text of the single child `tag`; None when absent or empty."""
    node = _one(parent, tag)
    if node is None:
        return None
    if len(node):
        raise XmlRejected(f"<{tag}> must hold text, not elements")
    value = (node.text or "").strip()
    return value or None


def _bill(node: etree._Element) -> Bill:
    for tag in _BILL_FIELDS:
        _one(node, tag)  # duplicates of a known field are ambiguous: refuse them
    bill_id = _text(node, p.TAG_BILL_ID)
    if bill_id is None:
        raise XmlRejected(f"<{p.TAG_BILL}> without <{p.TAG_BILL_ID}>")
    if _BILL_ID.fullmatch(bill_id) is None:
        raise XmlRejected(f"<{p.TAG_BILL_ID}> is not a bill id (letters, digits and _.:- only, at most 64)")
    raw_status = _text(node, p.TAG_BILL_STATUS) or ""
    amount_text = _text(node, p.TAG_AMOUNT)
    amount: int | None = None
    if amount_text is not None:
        try:
            amount = parse_amount(amount_text)
        except MoneyError:
            raise XmlRejected(f"<{p.TAG_AMOUNT}> is not an amount") from None
    return Bill(
        bill_id=bill_id,
        status=p.parse_bill_status(raw_status),
        raw_status=raw_status,
        contract_number=_text(node, p.TAG_CONTRACT_NUMBER),
        amount_kopecks=amount,
        currency=_text(node, p.TAG_CURRENCY),
        comment=_text(node, p.TAG_COMMENT),
        payee_id=_text(node, p.TAG_PAYEE_ID),
    )


def _error(root: etree._Element, requested_version: int) -> PortmoneError:
    node = _one(root, p.TAG_ERROR)
    code = ""
    message = ""
    if node is not None:
        if len(node):
            raise XmlRejected(f"<{p.TAG_ERROR}> must hold text, not elements")
        code = (node.get(p.ATTR_ERROR_CODE) or "").strip()
        message = (node.text or "").strip()
    description_node = _one(root, p.TAG_ERROR_DESCRIPTION)
    description = _text(root, p.TAG_ERROR_DESCRIPTION)
    return PortmoneError(
        code=code,
        message=message or p.describe_error(code),
        description=description,
        kind=p.classify_error(code),
        fell_back_to_v1=description_node is None and requested_version >= 2,
    )


def parse_rsp(body: bytes, *, max_bytes: int, requested_version: int = p.PROTOCOL_VERSION) -> Rsp:
    """Parse one `<rsp>` document or raise `XmlRejected`; no other exception escapes.

    `requested_version` is the protocol version the request asked for: a `fail` without
    `<error_description>` to a version-2 request is flagged `fell_back_to_v1`.
    """
    if not isinstance(body, bytes | bytearray | memoryview):
        raise XmlRejected("body must be bytes")
    body = bytes(body)
    if len(body) > max_bytes:
        raise XmlRejected(f"body is {len(body)} bytes, over the {max_bytes}-byte cap")
    if not body.strip():
        raise XmlRejected("empty body")
    if _DECLARATIONS.search(body):
        raise XmlRejected("DOCTYPE/ENTITY declarations are not allowed")
    _check_encoding(body)
    root = _parse_tree(body)
    _check_shape(root)
    if root.tag != p.TAG_RSP:
        raise XmlRejected(f"root element is <{_name(root)}>, expected <{p.TAG_RSP}>")
    status = (root.get(p.ATTR_STATUS) or "").strip().lower()
    if status not in (p.RSP_OK, p.RSP_FAIL):
        shown = "missing" if root.get(p.ATTR_STATUS) is None else repr(root.get(p.ATTR_STATUS, "")[:20])
        raise XmlRejected(f"<{p.TAG_RSP}> status is {shown}, expected {p.RSP_OK!r} or {p.RSP_FAIL!r}")
    bill_node = _one(root, p.TAG_BILL)
    bill = _bill(bill_node) if bill_node is not None else None
    if status == p.RSP_OK:
        return Rsp(ok=True, error=None, bill=bill)
    return Rsp(ok=False, error=_error(root, requested_version), bill=bill)
