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


def suggested_commands(text: str) -> list[list[str]]:
    """Every `payouts …` command a piece of output suggests: spans in backticks, indented lines, and what
    follows "Next:"."""
    import re
    import shlex

    found = [m.group(1) for m in re.finditer(r"`(payouts [^`]*)`", text)]
    lines = text.splitlines()
    found += [line.strip() for line in lines if line.startswith(" ") and line.strip().startswith("payouts ")]
    found += [line.split("Next: ", 1)[1] for line in lines if "Next: payouts " in line]
    return [shlex.split(command) for command in found]


def parse_error(argv: list[str]) -> str | None:
    """What the real `payouts` parser says of `argv` (without the leading `payouts`); None when it parses."""
    import contextlib
    import io

    from console.cli import _parser

    assert argv[0] == "payouts", argv
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err):
            _parser().parse_args(argv[1:])
    except SystemExit:
        return err.getvalue().strip() or "exit"
    return None
