"""Bounded fuzzing (hypothesis), a few seconds in CI: the intake endpoint never answers 5xx, whatever
JSON (or not-JSON) it gets, and never echoes the phone."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime import devdefaults
from tests.stack import TEST_PHONE, Stack

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
        f"{shared_stack.internal_url}/v1/receipts/accepted",
        content=body,
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {devdefaults.DEV_INTAKE_TOKEN}"},
    )
    assert resp.status_code in (202, 400, 413, 422), (resp.status_code, resp.text[:200])
    assert TEST_PHONE not in resp.text
