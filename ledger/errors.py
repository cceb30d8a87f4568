"""What the ledger raises. Callers map them: IllegalTransition/PayoutNotFound are bugs or races in the
caller, LedgerUnavailable is "try again later" (the webhook answers 503 so Portmone retries)."""

from __future__ import annotations

from payouts.status import PayoutStatus


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
