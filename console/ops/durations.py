"""Human durations for the CLI: `90s`, `30m`, `2h`, `1d`, `1h30m` in, `2h05m` out."""

from __future__ import annotations

import argparse
import re
from datetime import timedelta

_PART = re.compile(r"(\d+)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> timedelta:
    """`1h30m` → 90 minutes; raises argparse.ArgumentTypeError (argparse shows it as usage error)."""
    cleaned = text.strip().lower()
    parts = _PART.findall(cleaned)
    if not cleaned or "".join(n + u for n, u in parts) != cleaned:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 90s, 30m, 2h, 1d or 1h30m")
    return timedelta(seconds=sum(int(n) * _UNIT[u] for n, u in parts))


def format_age(age: timedelta) -> str:
    seconds = max(0, int(age.total_seconds()))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m" if minutes else f"{seconds}s"
