"""Request building: a `bills.create` request, validated once and then immutable.

Validation is separate from sending so a caller can check its inputs before it writes anything
(the activity writes a `prepared` attempt before each send): `BillRequest(...)` (or
`PortmoneClient.bill_request(...)`) raises ValueError for bad input and nothing is sent;
`PortmoneClient.send(request)` then never fails for input reasons. A `BillRequest` exists only in
a valid state: its fields are checked in `__post_init__` and cannot be changed afterwards.

The request holds the subscriber's phone in the clear (Portmone needs it); `repr()` shows it masked.
"""

from __future__ import annotations

from dataclasses import dataclass

from payouts.money import MoneyError, format_amount
from payouts.msisdn import is_valid_msisdn, mask_msisdn
from portmone import protocol as p


@dataclass(frozen=True, slots=True, kw_only=True)
class BillRequest:
    """The parameters of one `bills.create` call (without login, password, version, lang)."""

    payee_id: str
    contract_number: str
    amount_kopecks: int
    currency: str
    comment: str

    def __post_init__(self) -> None:
        if not isinstance(self.payee_id, str) or not self.payee_id.strip():
            raise ValueError("payee_id must not be empty")
        if not isinstance(self.contract_number, str) or not is_valid_msisdn(self.contract_number):
            raise ValueError("contract_number must be a phone number in the form 380 followed by 9 digits")
        if isinstance(self.amount_kopecks, bool) or not isinstance(self.amount_kopecks, int):
            raise ValueError("amount_kopecks must be an integer number of kopecks")
        if self.amount_kopecks <= 0:
            raise ValueError("amount_kopecks must be greater than zero")
        try:
            format_amount(self.amount_kopecks)
        except MoneyError as exc:
            raise ValueError(str(exc)) from None
        if self.currency not in p.CURRENCIES:
            raise ValueError(f"currency must be one of {', '.join(sorted(p.CURRENCIES))}")
        if not isinstance(self.comment, str) or len(self.comment) > p.MAX_COMMENT_LENGTH:
            raise ValueError(f"comment must be a string of at most {p.MAX_COMMENT_LENGTH} characters")

    @property
    def method(self) -> str:
        return p.METHOD_BILLS_CREATE

    @property
    def amount(self) -> str:
        """The amount as Portmone wants it: `"25.00"`."""
        return format_amount(self.amount_kopecks)

    @property
    def contract_masked(self) -> str:
        """The phone in the masked form `+380•••••67`."""
        return mask_msisdn(self.contract_number)

    def params(self) -> dict[str, str]:
        """The method's own form parameters (the client adds method, login, password, version, lang)."""
        return {
            p.P_PAYEE_ID: self.payee_id,
            p.P_CONTRACT_NUMBER: self.contract_number,
            p.P_AMOUNT: self.amount,
            p.P_CURRENCY: self.currency,
            p.P_COMMENT: self.comment,
        }

    def __repr__(self) -> str:
        return (
            f"BillRequest(payee_id={self.payee_id!r}, contract_number={self.contract_masked!r}, "
            f"amount_kopecks={self.amount_kopecks!r}, currency={self.currency!r}, comment={self.comment!r})"
        )

    __str__ = __repr__
