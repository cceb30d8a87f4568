"""Bounded fuzzing (hypothesis), a few seconds in CI: `portmone.parse_rsp` never raises anything but
`XmlRejected`, whatever bytes it gets, and what it accepts names a well-formed bill id.
(The intake endpoint's fuzzing is tests/webhook/test_intake_fuzz.py.)"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from portmone import XmlRejected, parse_rsp
from portmone.protocol import BILL_ID_PATTERN

CAP = 64 * 1024
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_TAGS = ["bill", "billId", "status", "error", "error_description", "amount", "currency", "comment",
         "contractNumber", "payeeId", "date", "x"]
_NASTY = ["&lol;", "&amp;", "&#0;", "&#x10FFFF;", "&#xD800;", "<![CDATA[x]]>", "<!-- c -->", "<?pi x?>",
          "<!DOCTYPE rsp>", '<!ENTITY e "x">', "]]>", "\x00", "\x1b", "\ufeff", "<", ">", "&", "</bill>",
          '<xi:include xmlns:xi="http://www.w3.org/2001/XInclude" href="file:///etc/passwd"/>', 'a="1"',
          "<bill><billId>1</billId></bill>", "'; DROP TABLE payouts;--", "A" * 4097, "<x>" * 10]
_SAFE = st.text(st.characters(blacklist_characters="<&", blacklist_categories=("Cs", "Cc")), max_size=20)
_VALUES = st.one_of(_SAFE, st.sampled_from(["PAYED", "payed", "CREATED", "REJECTED", "RETURN", "ok", "fail", "25.00",
                                            "-1", "1e9", "UAH", "1", "170000000000100001", "380001234567", " "]))


@st.composite
def _element(draw: st.DrawFn, depth: int = 0) -> str:
    """A well-formed element: plausible tags and values, nested a little."""
    tag = draw(st.sampled_from(_TAGS))
    attrs = draw(st.dictionaries(st.sampled_from(["code", "status", "lang"]), _VALUES, max_size=2))
    rendered = "".join(f' {k}="{v.replace(chr(34), "")}"' for k, v in attrs.items())
    children = "".join(draw(st.lists(_element(depth + 1), max_size=3))) if depth < 2 else ""
    return f"<{tag}{rendered}>{draw(_VALUES)}{children}</{tag}>"


@st.composite
def _document(draw: st.DrawFn) -> bytes:
    """A plausible `<rsp>`, then perhaps one nasty fragment spliced in, a cut, another encoding."""
    head = draw(st.sampled_from(["", '<?xml version="1.0" encoding="utf-8"?>', "<?xml version='1.0'?>",
                                 '<?xml version="1.0" encoding="windows-1251"?>', "\ufeff"]))
    status = draw(st.sampled_from(["ok", "fail", "OK", "", "maybe"]))
    text = f'{head}<rsp status="{status}">' + "".join(draw(st.lists(_element(), max_size=4))) + "</rsp>"
    if draw(st.booleans()):
        at = draw(st.integers(min_value=0, max_value=len(text)))
        text = text[:at] + draw(st.one_of(st.sampled_from(_NASTY), st.text(max_size=10))) + text[at:]
    encoding = draw(st.sampled_from(["utf-8"] * 6 + ["utf-16", "cp1251", "latin-1"]))
    raw = text.encode(encoding, errors="replace")
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        raw = raw[: draw(st.integers(min_value=0, max_value=len(raw)))]
    return raw


def _parses_or_rejects(body: bytes) -> None:
    try:
        rsp = parse_rsp(body, max_bytes=CAP)
    except XmlRejected as exc:
        reason = str(exc)
        assert reason, "a rejection always says why"
        return
    if rsp.bill is not None:
        assert re.fullmatch(BILL_ID_PATTERN, rsp.bill.bill_id)


@FUZZ
@given(st.binary(max_size=2048))
def test_parse_rsp_on_arbitrary_bytes(body: bytes) -> None:
    _parses_or_rejects(body)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_document())
def test_parse_rsp_on_xml_shaped_documents(body: bytes) -> None:
    _parses_or_rejects(body)


def test_the_document_strategy_reaches_acceptance() -> None:
    """The generator is not just noise: a well-formed callback it could produce parses."""
    body = b'<?xml version="1.0" encoding="utf-8"?><rsp status="ok"><bill><billId>1</billId></bill></rsp>'
    assert parse_rsp(body, max_bytes=CAP).bill is not None
