"""Phone numbers: normalising, masking, encrypting for transit and keyed hashing for limits.

A plaintext phone number exists only at intake (before encryption) and inside the `create_bill`
activity (decrypted just in time). Everything else holds a Fernet token, the masked form or the
keyed HMAC. `mask_phones` is the one redaction of phone numbers in text (Portmone's words, a
client's field names, anything bound for a log line or a header).
"""

from __future__ import annotations

import hashlib
import hmac
import re

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

_UA_MOBILE = re.compile(r"^380[0-9]{9}$")
# Between two digits of a number as people write it: spaces, dashes, dots, slashes, parentheses
# (`+380 (00) 000-10-61`, `380.00.000.10.61`), at most three of them.
_GAP = r"[\s().\-/]{0,3}"
# A Ukrainian mobile number in any spacing: `380` and nine digits, an optional `+`, not glued to
# a digit before or after it.
_PHONE_IN_TEXT = re.compile(rf"(?<![0-9])(?:\+{_GAP})?(3{_GAP}8{_GAP}0(?:{_GAP}[0-9]){{9}})(?![0-9])")
# Any number of seven digits or more, in the same spacing: what text a client wrote must not carry.
_LONG_NUMBER = re.compile(rf"[0-9](?:{_GAP}[0-9]){{6,}}")
BLANKED = "…"


class MsisdnError(ValueError):
    """A phone number or token that cannot be used."""


def normalize_msisdn(raw: str) -> str:
    """`+380 (67) 123-45-67`, `0671234567` or `380671234567` -> `380671234567`."""
    digits = re.sub(r"[\s()\-+]", "", raw.strip())
    if digits.startswith("0") and len(digits) == 10:
        digits = "38" + digits
    if not _UA_MOBILE.fullmatch(digits):
        raise MsisdnError("phone number must be a Ukrainian mobile number: 380 and 9 digits")
    return digits


def is_valid_msisdn(value: str) -> bool:
    """True for the canonical form 380 + 9 digits (what Portmone's contractNumber takes)."""
    return bool(_UA_MOBILE.fullmatch(value))


def mask_msisdn(msisdn: str) -> str:
    """`380671234567` -> `+380•••••67`: enough for a person to recognise, useless to anyone else."""
    return f"+{msisdn[:3]}•••••{msisdn[-2:]}"


def mask_phones(text: str, *, blank_numbers: bool = False) -> str:
    """Mask every Ukrainian mobile number in free text, however it is spaced or punctuated
    (`+380 00 000 10 61` -> `+380•••••61`).

    With `blank_numbers`, also blank (`…`) every other number of seven digits or more in any
    spacing: for text a client wrote (field names, values quoted back by a rule), where a phone in
    another country's format, or a local `0…` one, must not survive either. Portmone's own texts keep
    their numbers (bill ids, dates), so they are masked without it.
    """
    masked = _PHONE_IN_TEXT.sub(lambda m: mask_msisdn(re.sub(r"[^0-9]", "", m.group(1))), text)
    return _LONG_NUMBER.sub(BLANKED, masked) if blank_numbers else masked


class MsisdnVault:
    """Encrypts phones for transit (MultiFernet: first key encrypts, all keys decrypt) and hashes
    them with a keyed HMAC so limits can be counted per user without storing the phone."""

    def __init__(self, fernet_keys: list[str], hmac_key: bytes) -> None:
        if not fernet_keys:
            raise MsisdnError("at least one Fernet key is required")
        self._fernet = MultiFernet([Fernet(k.encode()) for k in fernet_keys])
        self._hmac_key = hmac_key

    def encrypt(self, msisdn: str) -> str:
        return self._fernet.encrypt(normalize_msisdn(msisdn).encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            value = self._fernet.decrypt(token.encode()).decode()
        except (InvalidToken, ValueError) as exc:
            raise MsisdnError("phone token cannot be decrypted with the configured keys") from exc
        if not is_valid_msisdn(value):
            raise MsisdnError("phone token holds no valid phone number")
        return value

    def rotate(self, token: str) -> str:
        """Re-encrypt a token under the newest key."""
        return self._fernet.rotate(token.encode()).decode()

    def digest(self, msisdn: str) -> str:
        """Keyed HMAC-SHA256 of the normalised phone, hex; the ledger's per-user key."""
        return hmac.new(self._hmac_key, normalize_msisdn(msisdn).encode(), hashlib.sha256).hexdigest()


def vault_from_settings(fernet_keys: list[str], hmac_key: str) -> MsisdnVault:
    """The vault for the configured keys (dev mode passes the embedded dev keys)."""
    return MsisdnVault(fernet_keys, hmac_key.encode())
