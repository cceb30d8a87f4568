"""A `payouts dev` as a newcomer runs it: its own process, free ports, a data dir of its own."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from tests.cli_helpers import clean_env
from tests.stack import free_port

START_WAIT = 90.0  # a safety net for a loaded machine, not a measured duration


@dataclass
class DevProcess:
    proc: subprocess.Popen[bytes]
    cwd: Path
    data_dir: Path
    ports: dict[str, int]
    log: Path

    @property
    def webhook_url(self) -> str:
        """The webhook's public listener: Portmone's callbacks."""
        return f"http://127.0.0.1:{self.ports['webhook']}"

    @property
    def internal_url(self) -> str:
        """The webhook's internal listener: intake, codec, health, metrics."""
        return f"http://127.0.0.1:{self.ports['internal']}"

    @property
    def port_flags(self) -> list[str]:
        return [f"--{name}-port={port}" for name, port in self.ports.items()]

    def state(self) -> dict[str, Any]:
        return json.loads((self.data_dir / "dev-stack.json").read_text())

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def start_dev(tmp: Path, *extra: str) -> tuple[DevProcess, IO[bytes]]:
    ports = {name: free_port() for name in ("temporal", "ui", "webhook", "internal", "sandbox", "metrics")}
    data_dir = tmp / ".data"
    log = tmp / "dev.out"
    out = log.open("wb")
    flags = [f"--{name}-port={port}" for name, port in ports.items()]
    proc = subprocess.Popen(
        [sys.executable, "-m", "console.cli", "dev", "--data-dir", str(data_dir), *flags, *extra],
        env=clean_env(), cwd=tmp, stdout=out, stderr=subprocess.STDOUT,
    )
    return DevProcess(proc=proc, cwd=tmp, data_dir=data_dir, ports=ports, log=log), out


def wait_ready(dev: DevProcess) -> None:
    """Until the state file is written and the webhook says Temporal and the ledger answer."""
    deadline = time.monotonic() + START_WAIT
    while time.monotonic() < deadline:
        assert dev.proc.poll() is None, dev.output()
        if (dev.data_dir / "dev-stack.json").exists():
            try:
                if httpx.get(f"{dev.internal_url}/readyz", timeout=3, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(0.3)
    raise AssertionError(f"payouts dev did not get ready:\n{dev.output()}")


def stop(dev: DevProcess) -> None:
    if dev.proc.poll() is None:
        dev.proc.send_signal(signal.SIGINT)
        try:
            dev.proc.wait(30)
        except subprocess.TimeoutExpired:
            dev.proc.kill()
            dev.proc.wait()


@pytest.fixture(scope="module")
def dev(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevProcess]:
    running, out = start_dev(tmp_path_factory.mktemp("newcomer"))
    try:
        wait_ready(running)
        yield running
    finally:
        stop(running)
        out.close()
