"""What the ledger raises. Callers map them: IllegalTransition/PayoutNotFound are bugs or races in the
caller, LedgerUnavailable is "try again later" (the webhook answers 503 so Portmone retries)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from payouts.status import PayoutStatus

if TYPE_CHECKING:
    from ledger.records import OpenBill


class LedgerError(Exception):
    """Base class of every ledger error."""


class IllegalTransition(LedgerError):
    """The status change is not in `payouts.status.LEGAL_TRANSITIONS`."""

    def __init__(self, payout_id: str, from_status: PayoutStatus, to_status: PayoutStatus) -> None:
        super().__init__(f"illegal transition for {payout_id}: {from_status} -> {to_status}")
        self.payout_id = payout_id
        self.from_status = from_status
        self.to_status = to_status


class PayoutNotFound(LedgerError):
    """No payout row with that id."""

    def __init__(self, payout_id: str) -> None:
        super().__init__(f"no payout {payout_id!r}")
        self.payout_id = payout_id


class LedgerUnavailable(LedgerError):
    """The database cannot be reached or refused for a transient reason (connection, lock, shutdown)."""


class NewBillRefused(LedgerError):
    """The new-bill rule: an earlier bill of this payout may hold money, so no new bill is sent."""

    def __init__(self, payout_id: str, open_bills: list[OpenBill]) -> None:
        listed = "; ".join(bill.describe() for bill in open_bills)
        super().__init__(f"no new bill for {payout_id}: an earlier bill may hold money ({listed})")
        self.payout_id = payout_id
        self.open_bills = open_bills

    @property
    def paid(self) -> bool:
        """A stored callback says an earlier bill was paid: no confirmation can allow another."""
        return any(bill.verdict == "paid" for bill in self.open_bills)
