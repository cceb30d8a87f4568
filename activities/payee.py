"""Which Portmone payee receives a top-up.

The receipt may name the payee. Otherwise the operator prefix of the number picks one from
PORTMONE_PAYEE_PREFIXES, falling back to PORTMONE_PAYEE_ID. Prefixes are a guess: Ukrainian numbers
are portable between operators, so a ported number can be routed to its old operator's payee and
Portmone will refuse it (code 24); that payout then goes to manual review.
"""

from __future__ import annotations

from collections.abc import Mapping


class PayeeUnknown(ValueError):
    """No payee is configured for a number."""


class PayeeResolver:
    def __init__(self, default_payee: str, prefixes: Mapping[str, str]) -> None:
        self._default = default_payee
        # Longest prefix first, so "380671" beats "38067".
        self._prefixes = sorted(prefixes.items(), key=lambda item: len(item[0]), reverse=True)

    def resolve(self, requested: str | None, msisdn: str) -> str:
        if requested:
            return requested
        for prefix, payee in self._prefixes:
            if msisdn.startswith(prefix):
                return payee
        if self._default:
            return self._default
        raise PayeeUnknown("no payee for this number: set PORTMONE_PAYEE_ID or PORTMONE_PAYEE_PREFIXES")
