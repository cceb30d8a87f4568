"""The one redaction helper: what may be logged, archived or recorded of a Portmone exchange.

- the password (any parameter, element or attribute named `password`) becomes `***`;
- the phone (`contractNumber`) becomes its masked form `+380•••••67` (or `***` when it is not a
  valid phone number, since then we cannot tell how much of it is safe to show);
- any other Ukrainian mobile number in free text (`380` + 9 digits in any spacing, optionally with
  `+`, not part of a longer number) is masked too, by the kernel's `mask_phones`, so a phone echoed
  in a comment or an error description never reaches the archive in the clear.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from payouts.msisdn import is_valid_msisdn, mask_msisdn, mask_phones
from portmone import protocol as p

REDACTED = "***"
__all__ = ["REDACTED", "mask_phones", "redact_params", "redact_xml"]

_SECRET_NAMES = frozenset(name.lower() for name in p.SECRET_PARAMS)
_PERSONAL_NAMES = frozenset(name.lower() for name in p.PERSONAL_PARAMS)


def _mask_contract(value: str) -> str:
    cleaned = value.strip()
    return mask_msisdn(cleaned) if is_valid_msisdn(cleaned) else REDACTED


def redact_params(params: Mapping[str, str]) -> dict[str, str]:
    """A copy of request parameters that is safe to log and archive."""
    out: dict[str, str] = {}
    for name, value in params.items():
        key = name.lower()
        if key in _SECRET_NAMES:
            out[name] = REDACTED
        elif key in _PERSONAL_NAMES:
            out[name] = _mask_contract(str(value))
        else:
            out[name] = mask_phones(str(value))
    return out


def _element_pattern(names: frozenset[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(n) for n in sorted(names))
    # <ns:name attr="…">text</ns:name>, any case, text without nested tags.
    return re.compile(
        rf"(<(?:[\w.-]+:)?(?:{alternatives})\b[^>]*(?<!/)>)((?:<!\[CDATA\[.*?\]\]>|[^<])*)(</(?:[\w.-]+:)?(?:{alternatives})\s*>)",
        re.IGNORECASE | re.DOTALL,
    )


def _attribute_pattern(names: frozenset[str]) -> re.Pattern[str]:
    alternatives = "|".join(re.escape(n) for n in sorted(names))
    return re.compile(rf"(\b(?:{alternatives})\s*=\s*)(\"[^\"]*\"|'[^']*')", re.IGNORECASE)


_SECRET_ELEMENT = _element_pattern(_SECRET_NAMES)
_SECRET_ATTRIBUTE = _attribute_pattern(_SECRET_NAMES)
_PERSONAL_ELEMENT = _element_pattern(_PERSONAL_NAMES)
_PERSONAL_ATTRIBUTE = _attribute_pattern(_PERSONAL_NAMES)
_CDATA = re.compile(r"<!\[CDATA\[(.*?)\]\]>", re.DOTALL)


def _mask_text(text: str) -> str:
    inner = _CDATA.sub(lambda m: m.group(1), text)
    return _mask_contract(inner)


def redact_xml(text: str) -> str:
    """A copy of an XML body (well-formed or not) with the password and phones masked."""
    text = _SECRET_ELEMENT.sub(lambda m: f"{m.group(1)}{REDACTED}{m.group(3)}", text)
    text = _SECRET_ATTRIBUTE.sub(lambda m: f'{m.group(1)}"{REDACTED}"', text)
    text = _PERSONAL_ELEMENT.sub(lambda m: f"{m.group(1)}{_mask_text(m.group(2))}{m.group(3)}", text)
    text = _PERSONAL_ATTRIBUTE.sub(lambda m: f'{m.group(1)}"{_mask_text(m.group(2)[1:-1])}"', text)
    return mask_phones(text)
