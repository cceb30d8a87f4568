"""Analytics events behind a small sink interface; the default sink writes structured log records."""

from __future__ import annotations

import json
import logging
from typing import Protocol

from payouts.models import AnalyticsEvent

_log = logging.getLogger("payouts.analytics")


class AnalyticsSink(Protocol):
    async def emit(self, event: AnalyticsEvent) -> None: ...


class LogSink:
    """One JSON log record per event; ids, amounts and statuses only (never a phone)."""

    async def emit(self, event: AnalyticsEvent) -> None:
        _log.info(json.dumps({"event": event.name, **event.model_dump(mode="json", exclude={"name"})}))


class MemorySink:
    """Keeps events in memory: for tests and the dev demo's summary."""

    def __init__(self) -> None:
        self.events: list[AnalyticsEvent] = []

    async def emit(self, event: AnalyticsEvent) -> None:
        self.events.append(event)
