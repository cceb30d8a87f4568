"""Search attributes of a payout workflow: no personal data, ever."""

from __future__ import annotations

from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

PAYOUT_STATUS = SearchAttributeKey.for_keyword("PayoutStatus")
RECEIPT_ID = SearchAttributeKey.for_keyword("ReceiptId")
PORTMONE_BILL_ID = SearchAttributeKey.for_keyword("PortmoneBillId")
ESCALATION_REASON = SearchAttributeKey.for_keyword("EscalationReason")
PAYOUT_AMOUNT_KOPECKS = SearchAttributeKey.for_int("PayoutAmountKopecks")

ALL: tuple[SearchAttributeKey[str] | SearchAttributeKey[int], ...] = (
    PAYOUT_STATUS,
    RECEIPT_ID,
    PORTMONE_BILL_ID,
    ESCALATION_REASON,
    PAYOUT_AMOUNT_KOPECKS,
)



def initial(receipt_id: str, amount_kopecks: int) -> TypedSearchAttributes:
    """Start-time attributes, so the payout is findable before its first task runs."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(PAYOUT_STATUS, "RECEIVED"),
            SearchAttributePair(RECEIPT_ID, receipt_id),
            SearchAttributePair(PAYOUT_AMOUNT_KOPECKS, amount_kopecks),
        ]
    )



async def register(client: Client) -> None:
    """Register the attributes on a cluster that lacks them (test server, a fresh production namespace)."""
    from temporalio.api.enums.v1 import IndexedValueType
    from temporalio.api.operatorservice.v1 import AddSearchAttributesRequest, ListSearchAttributesRequest
    from temporalio.service import RPCError, RPCStatusCode

    known: set[str] = set()
    try:
        existing = await client.operator_service.list_search_attributes(
            ListSearchAttributesRequest(namespace=client.namespace)
        )
        known = set(existing.custom_attributes) | set(existing.system_attributes)
    except RPCError as exc:
        if exc.status != RPCStatusCode.UNIMPLEMENTED:  # the Java test server cannot list
            raise
    missing = {key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in ALL if key.name not in known}
    if missing:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=missing)
        )
