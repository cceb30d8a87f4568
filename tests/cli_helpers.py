"""Running the `payouts` command as a user would: its own process, an environment without our settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SETTING_PREFIXES = (
    "PORTMONE_", "PAYOUTS_", "WEBHOOK_", "TELEGRAM_", "LEDGER_", "TEMPORAL_", "SANDBOX_", "TELECOM_", "PAYOUT_",
    "RECONCILE_", "WORKER_", "RABBIT_", "EVENTS_",
)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any payout setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
    env.update(extra)
    return env


def payouts(*args: str, env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )
