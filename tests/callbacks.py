"""Callback documents and a payout that waits for one."""

from __future__ import annotations

from typing import Any

from temporalio.client import WorkflowHandle

from payouts.status import PayoutStatus as S
from tests.stack import Stack

SETTLED = {S.PAID, S.MANUAL_REVIEW, S.REJECTED, S.CANCELLED, S.FAILED}


def paid(bill_id: str) -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<rsp status="ok"><bill><billId>{bill_id}</billId><status>PAYED</status>'
        "<amount>25.00</amount><currency>UAH</currency></bill></rsp>"
    ).encode()


def rejected(bill_id: str, description: str = "Платіж відхилено") -> bytes:
    return (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<rsp status="fail"><error code="30">rejected</error><error_description>{description}</error_description>'
        f"<bill><billId>{bill_id}</billId><status>REJECTED</status></bill></rsp>"
    ).encode()


async def waiting_payout(stack: Stack, **receipt: Any) -> tuple[WorkflowHandle[Any, Any], str]:
    """A payout whose bill exists and whose callback the sandbox dropped: it waits for ours."""
    await stack.faults({"drop_callback": True})
    handle = await stack.submit(**receipt)
    view = await stack.wait_status(handle, {S.AWAITING_CALLBACK})
    assert view.bill_id is not None
    return handle, view.bill_id
