"""A corpus of hostile Portmone callbacks, all naming a payout that really waits for its callback.

Each is posted to the webhook (properly signed unless the case is about the signature, so the
parser is what has to refuse it) and must get its clear 4xx while nothing changes: no ledger table
gains a row, the waiting workflow's history gains no event, the payout still waits. The last test
then sends the genuine callback, which pays: the corpus was refused for what it is.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import pytest
from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from payouts.status import PayoutStatus as S
from runtime import devdefaults
from runtime.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from tests.callbacks import SETTLED, paid, waiting_payout
from tests.stack import Stack, running_stack
from tests.stack_checks import state

SECRET = devdefaults.DEV_CALLBACK_HMAC_SECRET
TEN_MB = 10 * 1024 * 1024


@dataclass
class Waiting:
    stack: Stack
    handle: WorkflowHandle[object, object]
    bill_id: str


@pytest.fixture(scope="module")
async def waiting(env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Waiting]:
    async with running_stack(env.client, tmp_path_factory.mktemp("hostile"), read_timeout=1.0) as stack:
        handle, bill_id = await waiting_payout(stack)
        yield Waiting(stack, handle, bill_id)


def _doc(inner: str, head: str = '<?xml version="1.0" encoding="utf-8"?>\n') -> bytes:
    return (head + inner).encode()


def _bill(bill_id: str, status: str = "PAYED", extra: str = "") -> str:
    return f'<rsp status="ok"><bill><billId>{bill_id}</billId><status>{status}</status>{extra}</bill></rsp>'


_LAUGHS = "".join(
    f'<!ENTITY lol{i} "{("&lol" + str(i - 1) + ";") * 10}">' for i in range(1, 10)
)

# name -> (body for the waiting bill id, expected status)
BODIES: dict[str, tuple[Callable[[str], bytes], int]] = {
    "billion laughs": (
        lambda b: _doc(f'<!DOCTYPE rsp [<!ENTITY lol0 "lol">{_LAUGHS}]>' + _bill(b, "&lol9;")), 400),
    "quadratic blowup": (
        lambda b: _doc(f'<!DOCTYPE rsp [<!ENTITY a "{"x" * 20000}">]>' + _bill(b, "&a;" * 100)), 400),
    "external entity (file)": (
        lambda b: _doc('<!DOCTYPE rsp [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>' + _bill(b, "&xxe;")), 400),
    "external entity (network)": (
        lambda b: _doc('<!DOCTYPE rsp [<!ENTITY xxe SYSTEM "http://127.0.0.1:9/x">]>' + _bill(b, "&xxe;")), 400),
    "parameter entity": (
        lambda b: _doc('<!DOCTYPE rsp [<!ENTITY % p SYSTEM "http://127.0.0.1:9/p.dtd"> %p;]>' + _bill(b)), 400),
    "external DTD": (lambda b: _doc('<!DOCTYPE rsp SYSTEM "http://127.0.0.1:9/evil.dtd">' + _bill(b)), 400),
    "bare DOCTYPE": (lambda b: _doc("<!DOCTYPE rsp>" + _bill(b)), 400),
    "DOCTYPE in odd case and spacing": (lambda b: _doc("<! dOcTyPe rsp >" + _bill(b)), 400),
    "undeclared entity": (lambda b: _doc(_bill(b, "&payed;")), 400),
    "XInclude": (
        lambda b: _doc('<rsp status="ok" xmlns:xi="http://www.w3.org/2001/XInclude">'
                       '<xi:include href="file:///etc/passwd" parse="text"/>'
                       f"<bill><billId>{b}</billId><status>PAYED</status></bill></rsp>"), 400),
    "truncated": (lambda b: _doc(_bill(b))[:-12], 400),
    "only the declaration": (lambda b: _doc(""), 400),
    "empty body": (lambda b: b"", 400),
    "whitespace body": (lambda b: b"   \n\t ", 400),
    "UTF-16 document": (lambda b: ('<?xml version="1.0" encoding="utf-16"?>' + _bill(b)).encode("utf-16"), 400),
    "declared windows-1251 with Cyrillic": (
        lambda b: ('<?xml version="1.0" encoding="windows-1251"?>'
                   + _bill(b, extra="<comment>Оплата</comment>")).encode("cp1251"), 400),
    "invalid UTF-8": (lambda b: _doc(_bill(b, extra="<comment>")) [:-13] + b"\xc3\x28</comment></bill></rsp>", 400),
    "NUL byte": (lambda b: _doc(_bill(b)).replace(b"PAYED", b"PAY\x00ED"), 400),
    "JSON": (lambda b: f'{{"billId": "{b}", "status": "PAYED"}}'.encode(), 400),
    "binary garbage": (lambda b: bytes(range(256)) * 4, 400),
    "HTML": (lambda b: b"<html><body><h1>PAYED</h1></body></html>", 400),
    "huge attribute value": (lambda b: _doc(f'<rsp status="ok" note="{"A" * 5000}">' + _bill(b)[17:]), 400),
    "huge attribute name": (lambda b: _doc(f'<rsp status="ok" {"a" * 200}="1">' + _bill(b)[17:]), 400),
    "huge text": (lambda b: _doc(_bill(b, extra=f"<comment>{'A' * 5000}</comment>")), 400),
    "deep nesting": (lambda b: _doc(_bill(b, extra="<x>" * 40 + "</x>" * 40)), 400),
    "too many elements": (lambda b: _doc(_bill(b, extra="<x/>" * 300)), 400),
    "SQL in billId": (lambda b: _doc(_bill(f"{b}'; DROP TABLE payouts;--")), 400),
    "SQL-only billId": (lambda b: _doc(_bill("1 OR 1=1")), 400),
    "markup in billId": (lambda b: _doc(_bill(f"&lt;script&gt;{b}")), 400),
    "billId as elements": (lambda b: _doc(f'<rsp status="ok"><bill><billId><x>{b}</x></billId></bill></rsp>'), 400),
    "two billIds": (lambda b: _doc(_bill(b, extra=f"<billId>{b}</billId>")), 400),
    "two bills": (lambda b: _doc(f'<rsp status="ok"><bill><billId>{b}</billId></bill>'
                                 f"<bill><billId>{b}</billId></bill></rsp>"), 400),
    "no bill": (lambda b: _doc('<rsp status="ok"/>'), 400),
    "unknown rsp status": (lambda b: _doc(_bill(b).replace('status="ok"', 'status="maybe"', 1)), 400),
    "wrong root": (lambda b: _doc(_bill(b).replace("rsp", "response")), 400),
    "amount that is not an amount": (lambda b: _doc(_bill(b, extra="<amount>1e9</amount>")), 400),
    "10 MB body": (lambda b: _doc(_bill(b, extra=f"<comment>{'A' * TEN_MB}</comment>")), 413),
}


@pytest.mark.parametrize("name", list(BODIES))
async def test_hostile_body_is_refused_and_changes_nothing(waiting: Waiting, name: str) -> None:
    make, expected = BODIES[name]
    stack = waiting.stack
    before = await state(stack, waiting.handle.id)

    resp = await stack.post_callback(make(waiting.bill_id))

    assert resp.status_code == expected, resp.text[:300]
    if expected != 413:
        assert resp.json()["error"]
    assert await state(stack, waiting.handle.id) == before
    assert (await stack.view(waiting.handle)).status == S.AWAITING_CALLBACK


async def test_a_10_mb_body_without_content_length_is_cut_off(waiting: Waiting) -> None:
    stack = waiting.stack
    before = await state(stack, waiting.handle.id)

    async def chunks() -> AsyncIterator[bytes]:
        yield paid(waiting.bill_id)[:-20]
        for _ in range(160):
            yield b"A" * 65536

    resp = await stack.http.post(
        f"{stack.webhook_url}/portmone/callback", content=chunks(), headers={"Content-Type": "application/xml"}
    )

    assert resp.status_code == 413
    assert await state(stack, waiting.handle.id) == before


@pytest.mark.parametrize("content_type", ["application/json", "text/html", "application/octet-stream", ""])
async def test_wrong_content_type_is_415(waiting: Waiting, content_type: str) -> None:
    stack = waiting.stack
    before = await state(stack, waiting.handle.id)

    resp = await stack.post_callback(paid(waiting.bill_id), content_type=content_type)

    assert resp.status_code == 415
    assert await state(stack, waiting.handle.id) == before


@pytest.mark.parametrize(
    ("name", "skew", "secret"),
    [("forged", 0, "a-forged-secret-that-nobody-configured-0"), ("expired", -3600, SECRET), ("future", 3600, SECRET)],
)
async def test_bad_signatures_are_401(waiting: Waiting, name: str, skew: int, secret: str) -> None:
    stack = waiting.stack
    body = paid(waiting.bill_id)
    timestamp = str(int(time.time()) + skew)
    before = await state(stack, waiting.handle.id)

    resp = await stack.post_callback(
        body, signed=False, **{TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: sign(secret, timestamp, body)}
    )

    assert resp.status_code == 401
    assert await state(stack, waiting.handle.id) == before


async def test_sql_looking_text_in_a_valid_callback_is_stored_as_data(waiting: Waiting) -> None:
    """Parameterised queries: the text arrives in the ledger verbatim and every table is still there."""
    stack = waiting.stack
    sneaky = "x'); DELETE FROM payouts; --"
    body = _doc(
        '<rsp status="fail"><error code="30">no</error>'
        f"<error_description>{sneaky}</error_description>"
        "<bill><billId>UNKNOWN-SQL-1</billId><status>REJECTED</status></bill></rsp>"
    )
    before = await state(stack)

    resp = await stack.post_callback(body)

    assert resp.status_code == 202
    stored = [c for c in await stack.ledger.callbacks.unrouted() if c.bill_id == "UNKNOWN-SQL-1"]
    assert [c.error_description for c in stored] == [sneaky]
    after = await state(stack)
    assert after.tables["callbacks"] == before.tables["callbacks"] + 1
    assert {k: v for k, v in after.tables.items() if k != "callbacks"} == {
        k: v for k, v in before.tables.items() if k != "callbacks"
    }


async def test_after_the_corpus_the_genuine_callback_still_pays(waiting: Waiting) -> None:
    resp = await waiting.stack.post_callback(paid(waiting.bill_id))

    assert resp.status_code == 200
    view = await waiting.stack.wait_status(waiting.handle, SETTLED)
    assert view.status == S.PAID
    assert view.callbacks_seen == 1
