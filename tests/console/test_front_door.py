"""The README's two commands, walked as a newcomer walks them.

The quick start is read from the README itself and run verbatim in a fresh copy of the checkout: a fresh
venv from this machine's own `python3`, with the pip that venv brings (never upgraded), `pip install -e .`
and `payouts dev` on its embedded defaults. A second terminal then runs `payouts dev --demo 3` against it,
and every sample receipt must be PAID. The README and this test cannot drift apart: change one, and the
other is what runs. The test command is checked the same way against what CI runs (`.ci/run`).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest

from console import devstate
from runtime.settings import WorkerSettings
from tests.cli_helpers import clean_env

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"
# Fresh installs fetch from the package index; this is a safety net for a loaded machine, not a target.
READY_WAIT = 420.0
# `payouts dev`'s embedded defaults, as the README prints them: the quick start must find them free.
DEFAULT_PORTS = {**devstate.DEFAULT_PORTS, "metrics": WorkerSettings.model_fields["metrics_port"].default}


def readme_commands() -> list[str]:
    """The two commands of the README's "Two commands" section, in order (its first two code blocks)."""
    section = README.read_text().split("## Two commands", 1)[1].split("\n## ", 1)[0]
    return [block.strip() for block in re.findall(r"```bash\n(.*?)```", section, re.DOTALL)][:2]


def test_the_readme_names_two_commands_and_ci_runs_the_second() -> None:
    quick_start, test_command = readme_commands()
    assert "payouts dev" in quick_start
    assert "pip install" in quick_start and "--upgrade" not in quick_start
    ci = (ROOT / ".ci" / "run").read_text()
    assert re.search(rf"^exec {re.escape(test_command)}\s*$", ci, re.MULTILINE), ci


def test_the_test_command_never_upgrades_the_venvs_pip() -> None:
    """A pip newer than the README's Python brings once hid a quick start that did not install."""
    script = (ROOT / "scripts" / "test.sh").read_text()
    assert not re.search(r"pip install[^\n]*(--upgrade|-U)\b[^\n]*\bpip\b", script), script


def fresh_checkout(dest: Path) -> Path:
    """The checkout as a clone would have it: every file git knows of (tracked or not ignored), no venv."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode()  # fmt: skip
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, dest / name)
    return dest


def newcomer_env() -> dict[str, str]:
    """A shell as a newcomer opens it: no payout settings, no active venv, this machine's own `python3`."""
    env = clean_env()
    for name in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
        env.pop(name, None)
    # Drop every virtual environment's bin directory (this test's own included) from PATH.
    parts = env.get("PATH", "").split(os.pathsep)
    env["PATH"] = os.pathsep.join(p for p in parts if p and not (Path(p).parent / "pyvenv.cfg").exists())
    return env


def wait_until_ready(proc: subprocess.Popen[bytes], checkout: Path, log: Path) -> None:
    deadline = time.monotonic() + READY_WAIT
    webhook = f"http://127.0.0.1:{DEFAULT_PORTS['internal']}/readyz"
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"the quick start exited with {proc.returncode}:\n{log.read_text()[-6000:]}"
        if (checkout / ".data" / "dev-stack.json").exists():
            try:
                if httpx.get(webhook, timeout=3, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
        time.sleep(1)
    raise AssertionError(f"the quick start was not ready in {READY_WAIT:.0f} s:\n{log.read_text()[-6000:]}")


def ports_in_use() -> list[str]:
    import socket

    busy = []
    for name, port in DEFAULT_PORTS.items():
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                busy.append(f"{name} {port}")
    return busy


@pytest.mark.timeout(int(READY_WAIT) + 300)
def test_the_quick_start_runs_verbatim_and_the_demo_pays(tmp_path: Path) -> None:
    busy = ports_in_use()
    assert not busy, f"the quick start needs its default ports; in use here: {', '.join(busy)}"
    quick_start, _ = readme_commands()
    checkout = fresh_checkout(tmp_path / "receipt-payouts")
    env = newcomer_env()
    log = tmp_path / "quick-start.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(["bash", "-c", quick_start], cwd=checkout, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        try:
            wait_until_ready(proc, checkout, log)
            pip = subprocess.run([str(checkout / ".venv/bin/python"), "-m", "pip", "--version"],
                                 capture_output=True, text=True, env=env)  # fmt: skip
            system_pip = subprocess.run(["python3", "-m", "pip", "--version"], capture_output=True, text=True,
                                        env=env, cwd=tmp_path)  # fmt: skip
            # The venv's pip is the one its Python bundles (the same version as the system's), not an upgrade.
            assert pip.stdout.split()[1] == system_pip.stdout.split()[1], (pip.stdout, system_pip.stdout)

            demo = subprocess.run([str(checkout / ".venv/bin/payouts"), "dev", "--demo", "3"], cwd=checkout,
                                  env=env, capture_output=True, text=True, timeout=240)  # fmt: skip
            assert demo.returncode == 0, demo.stdout + demo.stderr
            assert "totals: PAID=3" in demo.stdout, demo.stdout
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C, as the README says, to the whole command
                try:
                    proc.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
    assert proc.returncode == 0 or proc.returncode == -signal.SIGINT, log.read_text()[-4000:]
