"""Typed results of a PortmoneDirect call: the bill, the error, the archived exchange, the four outcomes.

An outcome answers the one question the payout workflow must get right: did Portmone answer,
and if not, could the request have reached it?

- `AnsweredOk`: Portmone answered `ok` with a bill.
- `AnsweredFail`: Portmone (or the HTTP layer in front of it, for a 4xx) refused; no bill was made.
- `NotSent`: the request never left this process (connect failed, pool timeout, the call's total
  time budget ran out while connecting); safe to retry.
- `OutcomeUnknown`: the request may have reached Portmone and there is no answer we can trust
  (write or read timeout, the total time budget ran out after sending, connection lost after
  sending, 5xx or 2xx without a parseable `<rsp>`). Never re-send blindly: a person looks.

Nothing here holds the Portmone password, and `Exchange` holds only redacted text.
"""

from __future__ import annotations

from dataclasses import dataclass

from payouts.msisdn import is_valid_msisdn, mask_msisdn
from portmone.protocol import BillStatus, ErrorKind


def _masked(contract_number: str | None) -> str | None:
    if contract_number is None:
        return None
    return mask_msisdn(contract_number) if is_valid_msisdn(contract_number) else "***"


@dataclass(frozen=True, slots=True)
class Bill:
    """A bill as Portmone described it (in a `bills.create` answer or a callback).

    `contract_number` is the subscriber's phone in the clear (the activity needs it to check the
    echo); `repr()` shows it masked so the object can be logged safely.
    """

    bill_id: str
    status: BillStatus
    raw_status: str
    contract_number: str | None
    amount_kopecks: int | None
    currency: str | None
    comment: str | None
    payee_id: str | None

    def __repr__(self) -> str:
        return (
            f"Bill(bill_id={self.bill_id!r}, status={self.status.value!r}, raw_status={self.raw_status!r}, "
            f"contract_number={_masked(self.contract_number)!r}, amount_kopecks={self.amount_kopecks!r}, "
            f"currency={self.currency!r}, comment={self.comment!r}, payee_id={self.payee_id!r})"
        )

    @property
    def contract_masked(self) -> str | None:
        """The phone in the masked form `+380•••••67`, or None."""
        return _masked(self.contract_number)


@dataclass(frozen=True, slots=True)
class PortmoneError:
    """A `fail` answer: Portmone's code, short message, long description (version 2 only).

    `fell_back_to_v1` is True when we asked for version 2 and the `fail` came without
    `<error_description>`: Portmone fell back to version 1. Count it and alert on it.
    """

    code: str
    message: str
    description: str | None
    kind: ErrorKind
    fell_back_to_v1: bool


@dataclass(frozen=True, slots=True)
class Exchange:
    """One HTTP exchange, redacted, for the archive: no password, no phone in the clear."""

    method: str
    request: dict[str, str]
    http_status: int | None
    response_body: str | None
    elapsed_ms: int


@dataclass(frozen=True, slots=True)
class AnsweredOk:
    bill: Bill
    exchange: Exchange


@dataclass(frozen=True, slots=True)
class AnsweredFail:
    error: PortmoneError
    bill: Bill | None
    exchange: Exchange


@dataclass(frozen=True, slots=True)
class NotSent:
    """Nothing reached Portmone (connect failed, pool timeout, total budget spent while connecting):
    safe to send again."""

    reason: str
    exchange: Exchange


@dataclass(frozen=True, slots=True)
class OutcomeUnknown:
    """The request may have reached Portmone and no trustworthy answer came back."""

    reason: str
    exchange: Exchange


Outcome = AnsweredOk | AnsweredFail | NotSent | OutcomeUnknown
