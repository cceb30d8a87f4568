"""The request signature scheme (HMAC-SHA256 over timestamp and raw body), shared by the signer
(the sandbox playing Portmone, `payouts submit`, a proxy) and the verifier (the webhook).

Documented for outside implementers in docs/security.md:

    X-Payouts-Timestamp: <unix seconds, decimal digits>
    X-Payouts-Signature: v1=<lowercase hex HMAC-SHA256(secret, "<timestamp>." + raw body)>

Several `v1=` values may be sent, separated by commas (a sender in the middle of a rotation signs
with both secrets). The verifier accepts the request when any value matches any configured secret
and the timestamp lies within the window (±300 s by default) of its own clock.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

TIMESTAMP_HEADER = "X-Payouts-Timestamp"
SIGNATURE_HEADER = "X-Payouts-Signature"
SCHEME = "v1"
DEFAULT_WINDOW_SECONDS = 300
# More signatures than this in one header is not a rotation, it is someone guessing.
MAX_SIGNATURES = 4

_TIMESTAMP = re.compile(r"^[0-9]{1,12}$")
_SIGNATURE = re.compile(r"^v1=([0-9a-f]{64})$")


class SignatureFailure(StrEnum):
    """Why a signature check failed; the values are safe as metric labels (no secret, no input)."""

    MISSING = "signature_missing"
    MALFORMED = "signature_malformed"
    STALE = "timestamp_outside_window"
    MISMATCH = "signature_mismatch"


@dataclass(frozen=True, slots=True)
class SignatureCheck:
    ok: bool
    failure: SignatureFailure | None = None
    message: str = ""
    # Position of the configured secret that matched (0 = newest): tells when an old one is unused.
    secret_index: int | None = None


def canonical(timestamp: str, body: bytes) -> bytes:
    """The signed bytes: the timestamp as sent, one ".", the raw body exactly as sent."""
    return timestamp.encode("ascii") + b"." + body


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """`v1=<hex>` for one secret."""
    digest = hmac.new(secret.encode("utf-8"), canonical(timestamp, body), hashlib.sha256).hexdigest()
    return f"{SCHEME}={digest}"


def signature_headers(secrets: list[str], body: bytes, now: float | None = None) -> dict[str, str]:
    """The two headers a signer sends; with several secrets, one `v1=` value per secret."""
    if not secrets:
        raise ValueError("signing needs at least one secret")
    timestamp = str(int(time.time() if now is None else now))
    return {
        TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: ",".join(sign(s, timestamp, body) for s in secrets),
    }


def verify(
    *,
    timestamp: str | None,
    signature: str | None,
    body: bytes,
    secrets: Sequence[str],
    window_seconds: int = DEFAULT_WINDOW_SECONDS,
    now: float | None = None,
) -> SignatureCheck:
    """Check the headers against every configured secret, in constant time per comparison."""
    if not timestamp or not signature:
        return SignatureCheck(False, SignatureFailure.MISSING, f"{TIMESTAMP_HEADER} and {SIGNATURE_HEADER} required")
    timestamp = timestamp.strip()
    if not _TIMESTAMP.match(timestamp):
        return SignatureCheck(False, SignatureFailure.MALFORMED, f"{TIMESTAMP_HEADER} must be unix seconds")
    values = [v.strip() for v in signature.split(",")]
    if len(values) > MAX_SIGNATURES:
        return SignatureCheck(False, SignatureFailure.MALFORMED, f"more than {MAX_SIGNATURES} signatures")
    given: list[bytes] = []
    for value in values:
        match = _SIGNATURE.match(value)
        if match is None:
            return SignatureCheck(False, SignatureFailure.MALFORMED, f"{SIGNATURE_HEADER} must be v1=<64 hex>")
        given.append(match.group(1).encode("ascii"))
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > window_seconds:
        return SignatureCheck(False, SignatureFailure.STALE, f"timestamp outside the ±{window_seconds}s window")
    matched: int | None = None
    for index, secret in enumerate(secrets):
        expected = sign(secret, timestamp, body).removeprefix(f"{SCHEME}=").encode("ascii")
        for candidate in given:
            # No early exit: every pair is compared, so timing tells nothing about which one matched.
            if hmac.compare_digest(expected, candidate) and matched is None:
                matched = index
    if matched is None:
        return SignatureCheck(False, SignatureFailure.MISMATCH, "signature does not match")
    return SignatureCheck(True, secret_index=matched)
