"""The business day: limits, budgets and reconciliation reports turn over at midnight in Kyiv."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

BUSINESS_TZ = ZoneInfo("Europe/Kyiv")


def business_day(now: datetime) -> date:
    """Limits reset at midnight in Kyiv, where the shoppers are."""
    return now.astimezone(BUSINESS_TZ).date()
