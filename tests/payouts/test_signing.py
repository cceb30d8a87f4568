"""The signature scheme as docs/security.md states it, checked against an independent computation
and the worked example in the document, so an outside implementer can trust both."""

from __future__ import annotations

import hashlib
import hmac
from pathlib import Path

from runtime.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, SignatureFailure, sign, signature_headers, verify

EXAMPLE_SECRET = "example-secret-do-not-use-0000000000000"
EXAMPLE_TIMESTAMP = "1764237600"
EXAMPLE_BODY = (
    b'<?xml version="1.0" encoding="utf-8"?>\n<rsp status="ok"><bill><billId>170000000000100001</billId>'
    b"<status>PAYED</status></bill></rsp>"
)
EXAMPLE_SIGNATURE = "v1=8ab6963065f7e04e599d9c4c33d51b23255e4a59d02434f28d480c50f6499af4"
DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    expected = hmac.new(
        EXAMPLE_SECRET.encode(), EXAMPLE_TIMESTAMP.encode() + b"." + EXAMPLE_BODY, hashlib.sha256
    ).hexdigest()
    assert sign(EXAMPLE_SECRET, EXAMPLE_TIMESTAMP, EXAMPLE_BODY) == f"v1={expected}" == EXAMPLE_SIGNATURE


def test_the_documented_example_matches_the_code() -> None:
    text = DOC.read_text(encoding="utf-8")
    for fragment in (TIMESTAMP_HEADER, SIGNATURE_HEADER, EXAMPLE_SECRET, EXAMPLE_TIMESTAMP, EXAMPLE_SIGNATURE):
        assert fragment in text


def test_window_edges() -> None:
    now = 1_764_237_600.0
    for skew, ok in ((-300, True), (300, True), (-301, False), (301, False)):
        timestamp = str(int(now) + skew)
        result = verify(
            timestamp=timestamp, signature=sign("s" * 32, timestamp, b"x"), body=b"x", secrets=["s" * 32], now=now
        )
        assert result.ok is ok, skew
        if not ok:
            assert result.failure is SignatureFailure.STALE


def test_several_secrets_sign_with_one_value_each() -> None:
    headers = signature_headers(["a" * 32, "b" * 32], b"body", now=1_764_237_600)
    assert headers[TIMESTAMP_HEADER] == "1764237600"
    assert headers[SIGNATURE_HEADER] == ",".join(sign(s, "1764237600", b"body") for s in ("a" * 32, "b" * 32))
