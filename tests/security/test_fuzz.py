"""Bounded fuzzing (hypothesis), a few seconds in CI:

- `portmone.parse_rsp` never raises anything but `XmlRejected`, whatever bytes it gets, and what it
  accepts names a well-formed bill id;
- the intake endpoint never answers 5xx, whatever JSON (or not-JSON) it gets.
"""

from __future__ import annotations

import json
import re
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from payouts import devdefaults
from portmone import XmlRejected, parse_rsp
from portmone.protocol import BILL_ID_PATTERN
from tests.stack import TEST_PHONE, Stack

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


# ---- intake ---------------------------------------------------------------------------------------

_JSON_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=40),
)
_ANY_JSON = st.recursive(
    _JSON_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner,
                                                                                          max_size=4)), max_leaves=12
)
_FIELDS: dict[str, st.SearchStrategy[Any]] = {
    "receipt_id": st.one_of(st.from_regex(r"\AFZ-[A-Za-z0-9]{1,12}\Z"), _ANY_JSON),
    "telegram_id": st.one_of(st.integers(min_value=-5, max_value=10**12), _ANY_JSON),
    "msisdn": st.one_of(st.sampled_from([TEST_PHONE, "+380 (00) 123-45-67", "0001234567", "12345", ""]),
                        _ANY_JSON),
    "msisdn_token": st.one_of(st.text(min_size=10, max_size=60), _ANY_JSON),
    "amount_kopecks": st.one_of(st.integers(min_value=-(10**12), max_value=10**12), _ANY_JSON),
    "currency": st.one_of(st.sampled_from(["UAH", "USD", "uah", ""]), _ANY_JSON),
    "accepted_at": st.one_of(st.sampled_from(["2026-11-27T10:00:00Z", "2026-11-27T10:00:00", "nope"]), _ANY_JSON),
    "language": st.one_of(st.sampled_from(["uk", "en", "ru"]), _ANY_JSON),
    "fiscal_key": st.one_of(st.text(max_size=200), _ANY_JSON),
}


@st.composite
def _receipt_body(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["fields", "fields", "fields", "any", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "any":
        return json.dumps(draw(_ANY_JSON)).encode()
    chosen = draw(st.sets(st.sampled_from(sorted(_FIELDS)), max_size=len(_FIELDS)))
    return json.dumps({name: draw(_FIELDS[name]) for name in sorted(chosen)}).encode()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(body=_receipt_body())
async def test_intake_never_answers_5xx(shared_stack: Stack, body: bytes) -> None:
    resp = await shared_stack.http.post(
        f"{shared_stack.webhook_url}/v1/receipts/accepted",
        content=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {devdefaults.DEV_INTAKE_TOKEN}"},
    )
    assert resp.status_code in (202, 400, 413, 422), (resp.status_code, resp.text[:200])
    assert TEST_PHONE not in resp.text
