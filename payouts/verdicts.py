"""What a Portmone answer or callback means for our money, in our words (the workflow, the ledger and
reconciliation never read Portmone's status vocabulary; `portmone.protocol.callback_verdict` converts).

A bill's verdicts decide whether it may hold money (`bill_standing`): the new-bill rule and the
payout workflow both ask that one question.
"""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum
from typing import Literal


class Verdict(StrEnum):
    PAID = "paid"
    PENDING = "pending"  # the bill exists and is not settled yet
    DECLINED_TRANSIENT = "declined_transient"  # not paid; a new bill later may succeed
    DECLINED_PERMANENT = "declined_permanent"  # not paid; a person decides
    REVERSED = "reversed"  # paid, then the money went back
    UNKNOWN = "unknown"  # a status we do not know: a person looks


DECLINED: frozenset[Verdict] = frozenset({Verdict.DECLINED_TRANSIENT, Verdict.DECLINED_PERMANENT})
# Verdicts that settle a bill one way or the other (a pending one does not).
FINAL: frozenset[Verdict] = frozenset({Verdict.PAID, Verdict.REVERSED, Verdict.UNKNOWN, *DECLINED})

BillStanding = Literal["paid", "dead", "live"]

# Why an earlier attempt's bill may hold money (the new-bill rule's evidence, shown to operators):
# `paid` (a stored callback says Portmone paid it), `live` (a bill with no final non-paid callback),
# `no_ending` (the attempt was written and never finished: the worker stopped mid-call), `unknown` (the
# request may have reached Portmone unanswered).
BillVerdict = Literal["paid", "live", "no_ending", "unknown"]


def bill_standing(verdicts: Iterable[Verdict]) -> BillStanding:
    """Does a bill hold money, by every callback stored for it (in any order)?

    `paid`: Portmone paid it (and did not reverse it); `dead`: it will never be paid (declined, or
    the payment was reversed); `live`: anything else, a pending or unknown bill may still be paid.
    """
    seen = set(verdicts)
    if Verdict.REVERSED in seen:
        return "dead"
    if Verdict.PAID in seen:
        return "paid"
    if seen & DECLINED:
        return "dead"
    return "live"
