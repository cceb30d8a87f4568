"""Running the `payouts` command as a user would: its own process, an environment without our settings."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from runtime.setting_names import prefixes

SETTING_PREFIXES = tuple(prefixes())  # PAYOUTS_, PORTMONE_, … as runtime.settings declares them


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without any payout setting, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(SETTING_PREFIXES)}
    env.update(extra)
    return env


def payouts(*args: str, env: dict[str, str], cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "console.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
    )


@contextmanager
def payouts_process(*args: str, env: dict[str, str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """`payouts <args>` running as its own process, its output appended to `log`; killed on the way out
    if it is still running (a failed test leaves no process behind)."""
    process = subprocess.Popen([sys.executable, "-m", "console.cli", *args], env=env, stdout=log.open("ab"),
                               stderr=subprocess.STDOUT)  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


async def stop_cleanly(process: subprocess.Popen[bytes], log: Path, timeout: float = 30) -> None:
    """SIGTERM, as an orchestrator stops it, and an exit code of 0 within `timeout` (else its log)."""
    process.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(process.wait, timeout) == 0, log.read_text()


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
