"""ApplicationError type names shared by activities (which raise them) and workflows (which branch on them).

Every name here is also a promise: the messages of failures of these types are ours and hold no personal
data (phones are masked before they reach a message), so Temporal keeps them readable to operators
(`runtime.failure_converter`); failures of any other type are encrypted.
"""

from __future__ import annotations

# The request may have reached Portmone and no answer came back: never re-send blindly.
OUTCOME_UNKNOWN = "PortmoneOutcomeUnknown"
# Portmone answered fail with a permanent or configuration code: a person decides.
PERMANENT = "PortmonePermanentError"
# Portmone answered fail with a transient code, or the request was not sent: retry.
TRANSIENT = "PortmoneTransientError"
NOT_SENT = "PortmoneNotSent"
# The ledger refused a status change (or a new bill for a payout in the wrong status): a state conflict,
# never retried; the workflow follows the ledger.
ILLEGAL_TRANSITION = "LedgerIllegalTransition"
# The telecom API refused the top-up for good.
TELECOM_REFUSED = "TelecomRefused"
# The telecom API did not answer, or answered 5xx/429: the top-up is retried.
TELECOM_UNAVAILABLE = "TelecomUnavailable"
# The receipt's data cannot be used (phone token undecryptable, no payee for the number).
BAD_PAYOUT_DATA = "BadPayoutData"

# The new-bill rule refused a new bill: an earlier bill of the payout may hold money (details: the
# ledger ids of those attempts). A person checks Portmone and confirms before another bill is sent.
BILL_MAY_BE_LIVE = "BillMayBeLive"

# The ledger could not record a bill attempt, so nothing was sent: the workflow asks again after a
# pause, as long as the outage lasts (an outage delays a payout, it never sends it to a person). The
# ledger's own error travels as the cause, encrypted like any library failure.
ATTEMPT_NOT_RECORDED = "BillAttemptNotRecorded"

NON_RETRYABLE_BILL = [
    OUTCOME_UNKNOWN, PERMANENT, BAD_PAYOUT_DATA, BILL_MAY_BE_LIVE, ATTEMPT_NOT_RECORDED, ILLEGAL_TRANSITION,
]

# The operators' chat (Telegram) did not take a manual-review reminder; Temporal retries it a few times.
TELEGRAM_UNAVAILABLE = "TelegramUnavailable"

# An update validator refused an operator's update (a missing field, the wrong state): the message says
# why, in the operator's terms. Validators raise ApplicationError(message, type=UPDATE_REFUSED,
# non_retryable=True); a plain ValueError raised by a validator is read the same way.
UPDATE_REFUSED = "UpdateRefused"
