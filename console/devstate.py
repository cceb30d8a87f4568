"""What a running `payouts dev` started, in `<data dir>/dev-stack.json`, so that a second terminal
(`payouts ops --dev`, `payouts submit --dev`, `payouts dev --demo N`) finds it on whatever ports it
was given. Addresses and the dev callback timeout only: no keys, no tokens.

`payouts dev` writes the file once everything answers and removes it when it stops; a `payouts dev`
that was killed leaves it behind, so readers check `running()` before they trust it to be up.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

from runtime.devdefaults import dev_environment

STATE_FILE = "dev-stack.json"
DEFAULT_DATA_DIR = Path(".data")
DEFAULT_PORTS = {"temporal": 7233, "ui": 8233, "webhook": 8080, "internal": 8081, "sandbox": 8099}
DEV_CALLBACK_TIMEOUT = 60  # seconds: the manual queue can be tried out locally
DEV_REMINDER_INTERVAL = 300


@dataclass(frozen=True)
class DevStack:
    pid: int
    temporal_address: str
    namespace: str
    ui_url: str
    webhook_url: str  # the webhook's public listener: Portmone's callbacks (the sandbox sends them)
    internal_url: str  # its internal listener: intake, codec, health, metrics
    sandbox_url: str
    codec_endpoint: str
    data_dir: str
    callback_timeout_seconds: int

    def running(self) -> bool:
        """The `payouts dev` process that wrote the file is still alive."""
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True


def stack_on(data_dir: Path, *, temporal: int, ui: int, webhook: int, internal: int, sandbox: int, pid: int = 0,
             namespace: str = "default", callback_timeout_seconds: int = DEV_CALLBACK_TIMEOUT) -> DevStack:
    return DevStack(
        pid=pid,
        temporal_address=f"127.0.0.1:{temporal}",
        namespace=namespace,
        ui_url=f"http://127.0.0.1:{ui}",
        webhook_url=f"http://127.0.0.1:{webhook}",
        internal_url=f"http://127.0.0.1:{internal}",
        sandbox_url=f"http://127.0.0.1:{sandbox}",
        codec_endpoint=f"http://127.0.0.1:{internal}/codec",
        data_dir=str(data_dir),
        callback_timeout_seconds=callback_timeout_seconds,
    )


def port_of(address: str) -> int:
    """The port of `host:port` or `http://host:port`."""
    return int(address.rsplit(":", 1)[1])


def stack_environment(stack: DevStack) -> dict[str, str]:
    """The environment every part of (and every client of) a dev stack runs with."""
    environment = dev_environment(sandbox_url=stack.sandbox_url, webhook_url=stack.webhook_url,
                                  data_dir=stack.data_dir)
    environment.update({
        "TEMPORAL_ADDRESS": stack.temporal_address,
        "TEMPORAL_NAMESPACE": stack.namespace,
        "WEBHOOK_PORT": str(port_of(stack.webhook_url)),
        "WEBHOOK_INTERNAL_PORT": str(port_of(stack.internal_url)),
        "SANDBOX_PORT": str(port_of(stack.sandbox_url)),
        # Escalations within a minute, reminders every 5 minutes: the manual queue can be tried out locally.
        "PAYOUT_CALLBACK_TIMEOUT_SECONDS": str(stack.callback_timeout_seconds),
        "PAYOUT_MANUAL_REMINDER_SECONDS": str(DEV_REMINDER_INTERVAL),
    })
    return environment


def dev_process_environment(stack: DevStack, *, metrics_port: int) -> dict[str, str]:
    """What the `payouts dev` process adds for itself: the Web UI's origins, so that it may use the
    webhook's codec server (docs/security.md), and the port of the workers' /metrics."""
    return {
        "WEBHOOK_CODEC_CORS_ORIGINS": f"{stack.ui_url},http://localhost:{port_of(stack.ui_url)}",
        "WORKER_METRICS_PORT": str(metrics_port),
    }


def fill_environment(stack: DevStack) -> None:
    """Fill what the environment leaves unset with the stack's settings (the environment wins)."""
    for key, value in stack_environment(stack).items():
        os.environ.setdefault(key, value)


def use_dev_stack(given: Path | None) -> DevStack:
    """`--dev`: the stack recorded in the data dir (default ports when there is none), its settings
    filled into the environment. A missing record is said on stderr: `payouts dev` is not running there."""
    data_dir = dev_data_dir(given)
    stack = read_state(data_dir)
    if stack is None:
        print(f"note: no running `payouts dev` recorded in {state_path(data_dir)}; trying the default addresses",
              file=sys.stderr)
        stack = stack_on(data_dir, temporal=DEFAULT_PORTS["temporal"], ui=DEFAULT_PORTS["ui"],
                         webhook=DEFAULT_PORTS["webhook"], internal=DEFAULT_PORTS["internal"],
                         sandbox=DEFAULT_PORTS["sandbox"])
    elif not stack.running():
        print(f"note: the `payouts dev` recorded in {state_path(data_dir)} (pid {stack.pid}) is no longer running; "
              "trying its addresses", file=sys.stderr)
    fill_environment(stack)
    return stack


def state_path(data_dir: Path) -> Path:
    return data_dir / STATE_FILE


def write_state(stack: DevStack) -> Path:
    path = state_path(Path(stack.data_dir))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(stack), indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def read_state(data_dir: Path) -> DevStack | None:
    """The stack recorded in `data_dir`, or None when there is no (readable) record."""
    try:
        raw = json.loads(state_path(data_dir).read_text(encoding="utf-8"))
        return DevStack(**raw)
    except (OSError, ValueError, TypeError):
        return None


def remove_state(data_dir: Path, pid: int) -> None:
    """Remove the record if this process wrote it (a second `payouts dev` must not erase the first's)."""
    recorded = read_state(data_dir)
    if recorded is not None and recorded.pid == pid:
        with contextlib.suppress(OSError):
            state_path(data_dir).unlink()


def add_dev_arguments(p: argparse.ArgumentParser) -> None:
    """`--dev` and `--data-dir`, the same on every command that can talk to a local `payouts dev`."""
    p.add_argument("--dev", action="store_true",
                   help="talk to the local `payouts dev` stack (its addresses from DATA_DIR/dev-stack.json, "
                        "its dev settings where the environment is silent)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help=f"with --dev: the data dir `payouts dev` runs on "
                        f"(default $PAYOUTS_DATA_DIR or {DEFAULT_DATA_DIR})")


def dev_data_dir(given: Path | None) -> Path:
    return (given or Path(os.environ.get("PAYOUTS_DATA_DIR") or DEFAULT_DATA_DIR)).resolve()


def dev_flags(data_dir: Path) -> list[str]:
    """The arguments a suggested command needs to reach the same dev stack."""
    if data_dir.resolve() == DEFAULT_DATA_DIR.resolve():
        return ["--dev"]
    return ["--dev", "--data-dir", str(data_dir)]
