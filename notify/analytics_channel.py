"""The analytics channel: each payout event becomes one analytics event for the configured sink."""

from __future__ import annotations

from collections.abc import Sequence

from notify.analytics import AnalyticsSink
from payouts.escalation import reason_kind
from payouts.events import Outgoing, PayoutEvent, PayoutEventKind, UserMessage
from payouts.models import AnalyticsEvent, EscalationReason

_NAMES = {
    PayoutEventKind.PENDING: "payout_initiated",
    PayoutEventKind.SUCCESS: "payout_success",
    PayoutEventKind.FAILED: "payout_failure",
    PayoutEventKind.MANUAL_REVIEW: "payout_failure",
}


def analytics_event(event: PayoutEvent) -> AnalyticsEvent:
    """The analytics view of a payout event; a callback that never came is a `payout_timeout`."""
    name = _NAMES[event.kind]
    if event.kind == PayoutEventKind.MANUAL_REVIEW and reason_kind(event.reason) == EscalationReason.CALLBACK_TIMEOUT:
        name = "payout_timeout"
    return AnalyticsEvent.model_validate(
        {
            "name": name,
            "payout_id": event.payout_id,
            "amount_kopecks": event.amount_kopecks,
            "status": event.status,
            "reason": event.reason,
            "event_id": event.event_id,
        }
    )


class AnalyticsChannel:
    name = "analytics"

    def __init__(self, sink: AnalyticsSink) -> None:
        self._sink = sink

    def prepare(self, batch: Sequence[Outgoing]) -> set[str]:
        return set()  # sends no user message

    async def deliver(self, outgoing: Outgoing) -> UserMessage | None:
        await self._sink.emit(analytics_event(outgoing.event))
        return None
